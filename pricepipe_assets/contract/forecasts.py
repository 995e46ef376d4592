"""What a published forecast promises: how many days ahead it reaches and the level of its
intervals. The models are built to these and the API reports them."""

HORIZON_DAYS = 15
FORECAST_LEVEL = 0.9

# How each model's intervals are made, as the API and the chart page name them (the ``ml`` assets'
# metadata gives the exact parameters).
INTERVAL_METHODS: dict[str, str] = {
    "rf_daily": "split conformal on recent moves scaled by √h times an EWMA of daily volatility",
    "sgd_minute": "split conformal on recent residuals scaled by the minute's volatility",
    "lstm_minute": "split conformal on recent residuals scaled by the minute's volatility",
    "naive": "split conformal on the naive forecast's past moves, not scaled by volatility",
}
