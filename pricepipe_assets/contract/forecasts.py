"""What a published forecast promises: how many days ahead it reaches and the level of its
intervals. The models are built to these and the API reports them."""

HORIZON_DAYS = 15
FORECAST_LEVEL = 0.9
