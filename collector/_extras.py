"""The console script's entry point: checks the ``collector`` extra, then runs the CLI.

A base install (``pip install tracetables``) holds only the instrumentation library; every
``tracetables`` command needs the collector's dependencies. Without them the command says
which extra to install, on one line, instead of failing with an import traceback.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Final

HINT: Final = "tracetables: the collector needs its extra: pip install 'tracetables[collector]'"

# Each distribution of the ``collector`` extra (pyproject.toml) and a module it provides.
COLLECTOR_MODULES: Final[dict[str, str]] = {
    "opentelemetry-proto": "opentelemetry.proto.trace.v1.trace_pb2",
    "protobuf": "google.protobuf",
    "googleapis-common-protos": "google.rpc.status_pb2",
    "grpcio": "grpc",
    "aiohttp": "aiohttp",
    "psycopg": "psycopg",
    "PyYAML": "yaml",
    "prometheus-client": "prometheus_client",
}


def _present(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package is missing
        return False


def missing_collector_dependencies() -> list[str]:
    """The distributions of the ``collector`` extra whose module cannot be found."""
    return [dist for dist, module in COLLECTOR_MODULES.items() if not _present(module)]


def main() -> None:
    """Exit 1 with the install hint when the collector extra is missing, else run the CLI."""
    missing = missing_collector_dependencies()
    if missing:
        print(f"{HINT} (missing: {', '.join(missing)})", file=sys.stderr)
        raise SystemExit(1)
    from .cli import main as cli_main

    cli_main()
