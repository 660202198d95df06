"""The collector's error hierarchy.

::

    TracetablesError
    ├── ConfigError            a config file or value is invalid (names the key path)
    └── ConsumeError           a stage could not take a batch
        ├── PermanentError     retrying the same data cannot succeed (bad data)
        └── RetryableError     the same data may succeed later
            └── OverloadedError  refused at admission: the collector is full

Only receivers turn these into gRPC codes and HTTP statuses; every other stage raises
them, so the pipeline's one decision is *retry or not*.
"""

from __future__ import annotations


class TracetablesError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(TracetablesError):
    """A configuration file or value is invalid; the message names the key path."""


class ConsumeError(TracetablesError):
    """A pipeline stage could not consume a batch."""


class PermanentError(ConsumeError):
    """The data itself is rejected; sending it again cannot succeed."""


class RetryableError(ConsumeError):
    """The failure is transient (a store outage); the client should retry.

    Args:
        message: why, safe to show to a client (no attribute values, no DSNs).
        retry_after: seconds the client should wait before trying again.
    """

    def __init__(self, message: str, retry_after: float = 5.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class OverloadedError(RetryableError):
    """Refused at admission because queues are full; retry after a pause."""
