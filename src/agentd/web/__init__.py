"""The web dashboard and metrics: pages rendered by the server from the store, for people and for Prometheus."""
