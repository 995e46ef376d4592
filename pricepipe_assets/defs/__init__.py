"""Assets, one module per group of the asset graph."""
