"""Processors: steps between receivers and exporters."""
