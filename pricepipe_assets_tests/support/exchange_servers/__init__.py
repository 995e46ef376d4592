"""Local servers that speak the exchanges' protocols, fed with real data, for the source clients' tests."""
