"""API keys: random bearer tokens, shown once, stored only as a hash."""
