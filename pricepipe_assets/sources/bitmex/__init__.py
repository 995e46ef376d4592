"""BitMEX: the trade and quote WebSocket."""
