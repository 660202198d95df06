"""Collector extensions: health check, per-flow tracing config and its retention job."""
