"""Any venue CCXT supports, beside the native Binance and BitMEX clients: history through
``fetch_ohlcv`` (``history``), live trades and books through ccxt.pro (``live``), both configured by
the markets and endpoints of ``markets``."""
