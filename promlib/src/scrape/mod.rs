//! The one-target scrape: an HTTP GET with Prometheus' headers, auth, TLS, gzip, timeout and body size limit.
