"""Open, validate and align arrays lazily; read untrusted archives and pickles safely."""
