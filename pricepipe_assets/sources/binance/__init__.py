"""Binance: public dumps, REST klines and the kline WebSocket, with their wire formats."""
