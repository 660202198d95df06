"""Exporters: where batches go (``postgres``, ``debug``)."""
