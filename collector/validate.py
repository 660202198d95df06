"""``tracetables validate``: a config checked as far as a start would, without starting.

The config is loaded and every component the service would run is created by its
factory (``create``, never ``start``): no port is bound and no database is reached.
"""

from __future__ import annotations

from pathlib import Path

from .config import CollectorConfig, load_config


def validate_config(path: Path) -> CollectorConfig:
    """Load ``path`` and create its service's components; returns the config.

    Raises:
        ConfigError: the file, a key, or a component's creation refuses the config; the
            message names the key path.
    """
    from .service import Service

    config = load_config(path)
    Service(config)
    return config
