"""mitosis-server: the coordinator (Litestar app, services, persistence, background jobs)."""
