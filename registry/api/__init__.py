"""The HTTP API: routes, their schemas, and the one place where errors become HTTP responses."""
