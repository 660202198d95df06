"""The built wheel and sdist work outside the source tree, with their extras split.

Builds the sdist and, from it, the wheel once per module (``python -m build`` on a copy of
the tree), installs the wheel into fresh venvs in tmp, and runs the installed console script
from a directory outside the tree against a real embedded PostgreSQL.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.test_cli import free_ports
from tracetables.collector._extras import COLLECTOR_MODULES, HINT

ROOT = Path(__file__).resolve().parent.parent
TOP_PACKAGES = ("collector", "exporters", "instrumentation", "proto")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SERVER_ONLY = {"psycopg", "aiohttp", "pyyaml", "prometheus-client"}
BUILD_TIMEOUT = 600
INSTALL_TIMEOUT = 900
START_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0


def package_dirs() -> dict[str, Path]:
    """Every directory of the tree with an ``__init__.py``, by its installed package name."""
    found = {}
    for top in TOP_PACKAGES:
        for init in sorted((ROOT / top).rglob("__init__.py")):
            rel = init.parent.relative_to(ROOT / top)
            found[".".join(("tracetables", top, *rel.parts))] = init.parent
    return found


def dist_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match, requirement
    return match.group(0)


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class TestPackageList:
    def test_every_package_directory_is_listed(self) -> None:
        """``[tool.setuptools] packages`` holds exactly the directories with an ``__init__.py``."""
        assert set(PYPROJECT["tool"]["setuptools"]["packages"]) == set(package_dirs())

    def test_every_package_is_typed(self) -> None:
        """Each package directory has a ``py.typed`` marker."""
        assert [name for name, path in package_dirs().items() if not (path / "py.typed").is_file()] == []

    def test_extras_check_covers_the_collector_extra(self) -> None:
        """The console script checks one module for each distribution of the collector extra."""
        extra = PYPROJECT["project"]["optional-dependencies"]["collector"]
        assert sorted(map(dist_name, extra)) == sorted(COLLECTOR_MODULES)


@dataclass
class Dists:
    wheel: Path
    sdist: Path


def _run(args: list[str], timeout: float, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    """The sdist, and the wheel built from it, of a clean copy of this tree."""
    base = tmp_path_factory.mktemp("dists")
    source = base / "src"
    ignore = shutil.ignore_patterns(
        ".venv*",
        "build",
        "dist",
        "*.egg-info",
        "__pycache__",
        "*.so",
        ".tracetables",
        ".pytest_cache",
        ".mypy_cache",
        ".hypothesis",
        ".git",
    )
    shutil.copytree(ROOT, source, ignore=ignore)
    out = base / "dist"
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(source)], BUILD_TIMEOUT, cwd=base)
    (wheel,) = out.glob("tracetables-*.whl")
    (sdist,) = out.glob("tracetables-*.tar.gz")
    return Dists(wheel, sdist)


def clean_env() -> dict[str, str]:
    """This environment without TRACETABLES_* (but the PostgreSQL binaries) and PYTHONPATH."""
    return {
        k: v
        for k, v in os.environ.items()
        if (not k.startswith("TRACETABLES_") or k == "TRACETABLES_PG_BINDIR") and k != "PYTHONPATH"
    }


def make_venv(where: Path, *install: str) -> Path:
    """A fresh venv at ``where`` with ``install`` pip-installed; returns its bin directory."""
    _run([sys.executable, "-m", "venv", str(where)], INSTALL_TIMEOUT, cwd=where.parent)
    bin_dir = where / "bin"
    _run(
        [str(bin_dir / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q", *install],
        INSTALL_TIMEOUT,
        cwd=where.parent,
        env=clean_env(),
    )
    return bin_dir


@pytest.fixture(scope="module")
def full_venv(dists: Dists, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_venv(tmp_path_factory.mktemp("full") / "venv", f"{dists.wheel}[collector,sdk]")


@pytest.fixture(scope="module")
def base_venv(dists: Dists, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_venv(tmp_path_factory.mktemp("base") / "venv", str(dists.wheel))


class TestBuiltFiles:
    def test_wheel_holds_every_package_the_extensions_and_data(self, dists: Dists) -> None:
        """The wheel has each package's modules and py.typed, both compiled extensions, migrations, config."""
        names = set(zipfile.ZipFile(dists.wheel).namelist())
        for package, path in package_dirs().items():
            prefix = package.replace(".", "/")
            assert f"{prefix}/py.typed" in names
            for module in path.glob("*.py"):
                assert f"{prefix}/{module.name}" in names
        compiled = [n for n in names if n.endswith(".so")]
        assert any(n.startswith("tracetables/exporters/postgres/_fastrows.") for n in compiled), compiled
        assert any(n.startswith("tracetables/collector/processors/masking/_scan.") for n in compiled), compiled
        for sql in (ROOT / "exporters/postgres/migrations").glob("*.sql"):
            assert f"tracetables/exporters/postgres/migrations/{sql.name}" in names
        assert "tracetables/collector/default-config.yaml" in names
        assert "tracetables/collector/processors/masking/_scan.pyi" in names
        assert not [n for n in names if n.startswith("tests/")]

    def test_sdist_holds_c_sources_migrations_config_and_stubs(self, dists: Dists) -> None:
        """The sdist has every ``*.c`` and ``*.h``, the migrations, the default config and the stubs."""
        with tarfile.open(dists.sdist) as tar:
            names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        wanted = [
            p
            for top in TOP_PACKAGES
            for pattern in ("*.c", "*.h", "*.pyi", "*.sql", "py.typed")
            for p in (ROOT / top).rglob(pattern)
        ]
        assert any(p.suffix == ".c" for p in wanted) and any(p.suffix == ".h" for p in wanted)
        assert sorted(str(p.relative_to(ROOT)) for p in wanted if str(p.relative_to(ROOT)) not in names) == []
        assert "collector/default-config.yaml" in names
        assert "otel-config.yaml" in names

    def test_wheel_metadata_sdk_extra_has_no_server_dependencies(self, dists: Dists) -> None:
        """Requires-Dist: the base and the sdk extra name none of the collector's server packages."""
        with zipfile.ZipFile(dists.wheel) as whl:
            (meta,) = [n for n in whl.namelist() if n.endswith(".dist-info/METADATA")]
            lines = whl.read(meta).decode().splitlines()
        requires = [line.split(":", 1)[1].strip() for line in lines if line.startswith("Requires-Dist:")]
        base_or_sdk = [r for r in requires if ";" not in r or 'extra == "sdk"' in r]
        assert any(r.startswith("opentelemetry-sdk") for r in base_or_sdk)
        assert {normalized(dist_name(r)) for r in base_or_sdk} & SERVER_ONLY == set()


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def wait_healthy(served: Served, port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            pytest.fail(f"serve exited with {served.process.returncode}:\n{served.log()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    pytest.fail(f"no healthy answer on port {port} within {START_TIMEOUT}s:\n{served.log()}")


SEND_SPAN = """\
import sys
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

memory = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(memory))
with provider.get_tracer("package-test").start_as_current_span(sys.argv[2]):
    pass
result = OTLPSpanExporter(endpoint=sys.argv[1]).export(memory.get_finished_spans())
print(result.name)
sys.exit(0 if result is SpanExportResult.SUCCESS else 1)
"""


class TestInstalledWheel:
    def test_serve_stores_a_span_sent_by_the_installed_sdk(self, full_venv: Path) -> None:
        """The installed ``tracetables serve`` with the packaged config stores a span; ``sql`` reads it back."""
        tmp_path = Path(tempfile.mkdtemp(prefix="tt-package-"))
        tmp_path.chmod(0o755)  # as root the server runs unprivileged and must traverse this dir
        try:
            self._serve_and_read_back(full_venv, tmp_path)
        finally:
            shutil.rmtree(tmp_path, ignore_errors=True)

    def _serve_and_read_back(self, full_venv: Path, tmp_path: Path) -> None:
        """Config and embedded data dir in ``tmp_path``, which is also the cwd (data_dir resolves either way)."""
        where = _run(
            [
                str(full_venv / "python"),
                "-c",
                "import pathlib, tracetables.collector as c; print(pathlib.Path(c.__file__).parent)",
            ],
            60,
            cwd=tmp_path,
            env=clean_env(),
        ).strip()
        assert Path(where).is_relative_to(full_venv.parent), where  # the wheel's copy, not the tree
        shutil.copy(Path(where) / "default-config.yaml", tmp_path / "otel-config.yaml")
        grpc_port, http_port, health_port, metrics_port = free_ports(4)
        env = clean_env() | {
            "TRACETABLES_GRPC_ENDPOINT": f"127.0.0.1:{grpc_port}",
            "TRACETABLES_HTTP_ENDPOINT": f"127.0.0.1:{http_port}",
            "TRACETABLES_HEALTH_ENDPOINT": f"127.0.0.1:{health_port}",
            "TRACETABLES_METRICS_ADDRESS": f"127.0.0.1:{metrics_port}",
            # The shipped config keeps its data per user; here that is the test's own folder.
            "XDG_DATA_HOME": str(tmp_path / "data"),
        }
        script = str(full_venv / "tracetables")
        log_path = tmp_path / "serve.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [script, "serve", "--config", "otel-config.yaml"],
                cwd=tmp_path,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        served = Served(process, log_path)
        try:
            wait_healthy(served, health_port)
            (tmp_path / "send_span.py").write_text(SEND_SPAN, encoding="utf-8")
            sent = subprocess.run(
                [
                    str(full_venv / "python"),
                    "send_span.py",
                    f"http://127.0.0.1:{http_port}/v1/traces",
                    "installed-wheel-span",
                ],
                cwd=tmp_path,
                env=clean_env(),
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert sent.returncode == 0, sent.stdout + sent.stderr
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=STOP_TIMEOUT) == 0, served.log()
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=STOP_TIMEOUT)
        read = subprocess.run(
            [script, "sql", "--config", "otel-config.yaml", "-c", "select name from spans"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert read.returncode == 0, read.stderr
        assert "installed-wheel-span" in [line.strip() for line in read.stdout.splitlines()]
        assert (tmp_path / "data" / "tracetables" / "pg" / "PG_VERSION").is_file()

    def test_base_install_imports_instrumentation_and_hints_at_the_extra(self, base_venv: Path, tmp_path: Path) -> None:
        """Without extras the instrumentation imports; ``tracetables serve`` prints the hint, exits 1."""
        python = str(base_venv / "python")
        _run([python, "-c", "import tracetables.instrumentation"], 60, cwd=tmp_path, env=clean_env())
        no_yaml = subprocess.run(
            [python, "-c", "import yaml"], cwd=tmp_path, env=clean_env(), capture_output=True, timeout=60, check=False
        )
        assert no_yaml.returncode != 0  # the base install really lacks the collector's packages
        served = subprocess.run(
            [str(base_venv / "tracetables"), "serve"],
            cwd=tmp_path,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert served.returncode == 1
        assert served.stderr.startswith(HINT), served.stderr
        assert len(served.stderr.strip().splitlines()) == 1
        assert "Traceback" not in served.stderr

    def test_sdk_extra_resolves_without_server_packages(self, dists: Dists, base_venv: Path, tmp_path: Path) -> None:
        """``pip install --dry-run --report`` of ``tracetables[sdk]`` installs none of the server packages."""
        report = tmp_path / "report.json"
        _run(
            [
                str(base_venv / "python"),
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "-q",
                "--dry-run",
                "--ignore-installed",
                "--report",
                str(report),
                f"{dists.wheel}[sdk]",
            ],
            INSTALL_TIMEOUT,
            cwd=tmp_path,
            env=clean_env(),
        )
        names = {normalized(item["metadata"]["name"]) for item in json.loads(report.read_text())["install"]}
        assert "opentelemetry-sdk" in names
        assert names & SERVER_ONLY == set()
