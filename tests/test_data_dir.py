"""Where the embedded cluster lives: independent of the working directory, and never
created by a command that only reads (``sql``, ``db status``)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_cli import SERVE_CONFIG, child_env, postmaster_pid, run_cli, servers_on, stop_leftover_server
from tracetables.collector.config import load_config, parse_config
from tracetables.exporters.postgres.config import PostgresExporterConfig

DEFAULT_CONFIG = Path(__file__).parent.parent / "collector" / "default-config.yaml"


@pytest.fixture
def base() -> Iterator[Path]:
    """A directory the unprivileged server user can traverse (we may be root)."""
    path = Path(tempfile.mkdtemp(prefix="tt-data-dir-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        stop_leftover_server(path / "conf" / "pg")
        shutil.rmtree(path, ignore_errors=True)


def _pg(text: str, tmp_path: Path, env: dict[str, str] | None = None) -> PostgresExporterConfig:
    path = tmp_path / "sub" / "c.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    pg = load_config(path, env={} if env is None else env).exporters["postgres"]
    assert isinstance(pg, PostgresExporterConfig)
    return pg


class TestResolution:
    def test_relative_data_dir_is_against_the_config_files_directory(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir("/")
        pg = _pg(SERVE_CONFIG.format(grpc_port=1, http_port=2), tmp_path)
        assert pg.embedded.data_dir == str(tmp_path.resolve() / "sub" / "pg")

    def test_absolute_and_home_data_dirs_are_kept(self, tmp_path: Path) -> None:
        text = SERVE_CONFIG.format(grpc_port=1, http_port=2)
        assert _pg(text.replace("./pg", "/srv/tt/pg"), tmp_path).embedded.data_dir == "/srv/tt/pg"
        home = _pg(text.replace("./pg", "~/tt"), tmp_path).embedded.data_dir
        assert home == str(Path("~/tt").expanduser())

    def test_packaged_default_uses_xdg_data_home(self, tmp_path: Path) -> None:
        pg = load_config(DEFAULT_CONFIG, env={"XDG_DATA_HOME": str(tmp_path)}).exporters["postgres"]
        assert isinstance(pg, PostgresExporterConfig)
        assert pg.embedded.data_dir == str(tmp_path / "tracetables" / "pg")

    def test_packaged_default_falls_back_to_local_share(self) -> None:
        for env in ({"HOME": "/home/ada"}, {"HOME": "/home/ada", "XDG_DATA_HOME": "relative/ignored"}):
            pg = load_config(DEFAULT_CONFIG, env=env).exporters["postgres"]
            assert isinstance(pg, PostgresExporterConfig)
            assert pg.embedded.data_dir == "/home/ada/.local/share/tracetables/pg"

    def test_parse_config_without_a_file_leaves_relative_paths_relative(self) -> None:
        pg = parse_config(SERVE_CONFIG.format(grpc_port=1, http_port=2), {}).exporters["postgres"]
        assert isinstance(pg, PostgresExporterConfig)
        assert pg.embedded.data_dir == "./pg"


class TestCommands:
    def test_sql_from_another_directory_finds_the_same_cluster(self, base: Path) -> None:
        conf = base / "conf"
        conf.mkdir()
        config = conf / "otel-config.yaml"
        config.write_text(SERVE_CONFIG.format(grpc_port=1, http_port=2), encoding="utf-8")
        elsewhere = base / "elsewhere"
        elsewhere.mkdir()
        env = child_env(None)
        made = run_cli("db", "migrate", "--config", str(config), env=env, cwd=conf)
        assert made.returncode == 0, made.stderr
        assert (conf / "pg" / "PG_VERSION").is_file()
        marker = run_cli(
            "sql",
            "--config",
            "otel-config.yaml",
            "-c",
            "INSERT INTO tracing_config (flow_id, enabled) VALUES ('from-conf', true)",
            env=env,
            cwd=conf,
        )
        assert marker.returncode == 0, marker.stderr

        found = run_cli(
            "sql", "--config", str(config), "-c", "SELECT flow_id FROM tracing_config", env=env, cwd=elsewhere
        )
        assert found.returncode == 0, found.stderr
        assert "from-conf" in found.stdout
        assert list(elsewhere.iterdir()) == []  # no second cluster beside the caller
        assert not postmaster_pid(conf / "pg").exists()
        assert servers_on(conf / "pg") == []

    @pytest.mark.parametrize(
        "command",
        [("sql", "-c", "SELECT 1"), ("db", "status"), ("db", "grant-reader", "bob", "--password-env", "TT_PW")],
    )
    def test_no_cluster_fails_naming_the_directory_and_creates_nothing(
        self, base: Path, command: tuple[str, ...]
    ) -> None:
        config = base / "otel-config.yaml"
        config.write_text(SERVE_CONFIG.format(grpc_port=1, http_port=2).replace("./pg", "./state/pg"), encoding="utf-8")
        result = run_cli(*command, "--config", str(config), env={**child_env(None), "TT_PW": "pw"}, cwd=base)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert str(base.resolve() / "state" / "pg") in lines[0]
        assert "tracetables serve" in lines[0] and "tracetables db migrate" in lines[0]
        assert "Traceback" not in result.stderr
        assert sorted(p.name for p in base.iterdir()) == ["otel-config.yaml"]
