"""Market-data sources: clients for each venue's wire format, and the replay of stored history."""
