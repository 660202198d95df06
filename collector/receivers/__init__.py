"""Receivers: OTLP over gRPC and HTTP."""
