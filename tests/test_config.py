"""The collector config: the shipped default, every validation rule, env substitution, ids.

Each bad config is a file in ``testdata/config/`` breaking exactly one rule; the error
must name the full key path first, then the problem.
"""

from __future__ import annotations

import os
from dataclasses import FrozenInstanceError
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

import tracetables.collector
from tests.tls_certs import Pki, make_pki
from tracetables.collector._confmap import expand_env
from tracetables.collector.components import DATABASE_URL_ENV
from tracetables.collector.config import (
    CollectorConfig,
    LogsConfig,
    MetricsConfig,
    PipelineConfig,
    component_type,
    load_config,
)
from tracetables.collector.errors import ConfigError
from tracetables.collector.extensions.health_check import HealthCheckConfig
from tracetables.collector.extensions.tracing_config import TracingConfigExtensionConfig
from tracetables.collector.processors.config import BatchProcessorConfig
from tracetables.collector.processors.pii_masking import PiiMaskingConfig
from tracetables.collector.processors.webhook_redaction import WebhookRedactionConfig
from tracetables.collector.receivers.config import GrpcConfig, HttpConfig, OtlpReceiverConfig, Protocols
from tracetables.collector.receivers.cors import CorsConfig
from tracetables.collector.receivers.tls import TlsServerConfig
from tracetables.exporters.debug import DebugExporterConfig
from tracetables.exporters.postgres.config import PostgresExporterConfig

BAD_CONFIGS = Path(__file__).parent / "testdata" / "config"
DEFAULT_CONFIG = Path(tracetables.collector.__file__).with_name("default-config.yaml")
MIB = 1024 * 1024
FILE = object()  # the expected "key path" of errors about the whole file: the file's path

# A small valid config; tests append to it or fill in ``{dsn}``.
MINIMAL = """\
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:4318
exporters:
  postgres:
    dsn: {dsn}
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [postgres]
"""


def minimal(dsn: str = '""') -> str:
    return MINIMAL.format(dsn=dsn)


def load_text(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> CollectorConfig:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, env={} if env is None else env)


def postgres(config: CollectorConfig, cid: str = "postgres") -> PostgresExporterConfig:
    exporter = config.exporters[cid]
    assert isinstance(exporter, PostgresExporterConfig)
    return exporter


class TestDefaultConfig:
    def test_default_config_loads_with_documented_defaults(self) -> None:
        """The shipped default config loads with no environment and has the documented values."""
        config = load_config(DEFAULT_CONFIG, env={})
        otlp = config.receivers["otlp"]
        assert isinstance(otlp, OtlpReceiverConfig)
        assert otlp.protocols.grpc is not None and otlp.protocols.http is not None
        assert otlp.protocols.grpc.endpoint == "127.0.0.1:4317"  # loopback: serving others is a choice
        assert otlp.protocols.http.endpoint == "127.0.0.1:4318"
        assert otlp.protocols.grpc.tls is None and otlp.protocols.http.tls is None
        assert otlp.protocols.http.cors is None
        assert otlp.protocols.grpc.max_recv_msg_size_mib == 4
        assert otlp.protocols.http.max_request_body_size == 20 * MIB
        assert otlp.protocols.http.traces_url_path == "/v1/traces"
        batch = config.processors["batch"]
        assert isinstance(batch, BatchProcessorConfig)
        assert batch.send_batch_size == 8192
        assert batch.timeout == timedelta(milliseconds=200)
        assert batch.send_batch_max_size == 0
        assert batch.max_queued_spans == 200_000
        assert config.processors["pii_masking"] == PiiMaskingConfig()  # privacy on, with the defaults
        assert config.processors["webhook_redaction"] == WebhookRedactionConfig(max_body_bytes=1024)
        pg = postgres(config)
        assert pg.dsn == ""  # no DSN and no TRACETABLES_DATABASE_URL: the embedded server
        # empty in the file: the per-user directory (HOME from the passwd entry when env has none)
        if os.geteuid() == 0 and not os.environ.get("XDG_DATA_HOME"):
            assert pg.embedded.data_dir == "/var/lib/tracetables/pg"  # root's home is closed to postgres
        else:
            assert pg.embedded.data_dir.endswith("/.local/share/tracetables/pg")
        assert pg.embedded.listen == ""
        assert pg.sending_queue.num_consumers == 2
        assert pg.retry_on_failure.enabled
        assert pg.retry_on_failure.max_elapsed_time == timedelta(seconds=5)
        assert config.exporters["debug"] == DebugExporterConfig(verbosity="basic")
        assert config.service.pipelines == {
            "traces": PipelineConfig(
                receivers=("otlp",),
                processors=("memory_limiter", "trace_level", "pii_masking", "webhook_redaction", "batch"),
                exporters=("postgres",),
            )
        }
        assert config.service.telemetry.logs == LogsConfig(level="info", encoding="console")
        assert config.service.telemetry.metrics == MetricsConfig()  # 127.0.0.1:8888, level normal
        assert config.service.extensions == ("health_check", "tracing_config")
        assert dict(config.extensions) == {
            "health_check": HealthCheckConfig(),
            "tracing_config": TracingConfigExtensionConfig(),
        }

    def test_default_config_matches_code_defaults(self) -> None:
        """The values the default file spells out are the config classes' own defaults."""
        config = load_config(DEFAULT_CONFIG, env={})
        assert config.receivers["otlp"] == OtlpReceiverConfig(protocols=Protocols(grpc=GrpcConfig(), http=HttpConfig()))
        assert config.processors["batch"] == BatchProcessorConfig()
        assert config.exporters["postgres"] == PostgresExporterConfig().with_env({})  # data_dir: the per-user one

    def test_default_config_takes_endpoints_level_and_database_from_env(self) -> None:
        """The default config's env hooks set the endpoints, the log level and the DSN."""
        env = {
            "TRACETABLES_GRPC_ENDPOINT": "127.0.0.1:14317",
            "TRACETABLES_HTTP_ENDPOINT": "127.0.0.1:14318",
            "TRACETABLES_LOG_LEVEL": "debug",
            DATABASE_URL_ENV: "postgresql://u@db.example/spans",
        }
        config = load_config(DEFAULT_CONFIG, env=env)
        otlp = config.receivers["otlp"]
        assert otlp.protocols.grpc.endpoint == "127.0.0.1:14317"
        assert otlp.protocols.http.endpoint == "127.0.0.1:14318"
        assert config.service.telemetry.logs.level == "debug"
        assert postgres(config).dsn == "postgresql://u@db.example/spans"

    def test_config_is_frozen(self) -> None:
        """A loaded config cannot be changed by a component."""
        config = load_config(DEFAULT_CONFIG, env={})
        with pytest.raises(FrozenInstanceError):
            config.processors["batch"].send_batch_size = 1


# (file, the key path the message must start with, words the message must contain)
BAD_CASES: list[tuple[str, object, tuple[str, ...]]] = [
    ("unknown-top-level-key.yaml", "recievers", ("unknown key", "receivers")),
    ("unknown-component-key.yaml", "receivers.otlp.protocols.grpc.endpointt", ("unknown key", "endpoint")),
    ("unknown-component-type.yaml", "exporters.kafka", ("unknown exporter type", "kafka", "postgres")),
    ("wrong-type-string-for-int.yaml", "processors.batch.send_batch_size", ("expected an integer", "lots")),
    ("wrong-type-list-for-mapping.yaml", "receivers.otlp.protocols", ("expected a mapping", "list")),
    ("wrong-type-string-for-bool.yaml", "exporters.postgres.migrate_on_start", ("true or false", "sometimes")),
    ("negative-http-body-size.yaml", "receivers.otlp.protocols.http.max_request_body_size", ("> 0", "-1")),
    ("zero-grpc-message-size.yaml", "receivers.otlp.protocols.grpc.max_recv_msg_size_mib", ("> 0", "0")),
    ("http-negative-max-connections.yaml", "receivers.otlp.protocols.http.max_concurrent_connections", (">= 0", "-5")),
    ("grpc-zero-keepalive-time.yaml", "receivers.otlp.protocols.grpc.keepalive.server_parameters.time", ("> 0",)),
    ("zero-send-batch-size.yaml", "processors.batch.send_batch_size", ("> 0",)),
    ("zero-span-limit.yaml", "receivers.otlp.limits.max_attributes", ("> 0",)),
    ("endpoint-without-port.yaml", "receivers.otlp.protocols.grpc.endpoint", ("host:port", "localhost")),
    ("endpoint-port-out-of-range.yaml", "receivers.otlp.protocols.http.endpoint", ("host:port", "70000")),
    ("bad-duration.yaml", "processors.batch.timeout", ("duration", "fast")),
    ("batch-max-below-size.yaml", "processors.batch.send_batch_max_size", (">= send_batch_size", "500")),
    ("queue-below-batch-size.yaml", "processors.batch.max_queued_spans", (">= send_batch_size", "999")),
    ("pipeline-undefined-receiver.yaml", "service.pipelines.traces.receivers[0]", ("otlp/missing", "not defined")),
    ("pipeline-undefined-exporter.yaml", "service.pipelines.traces.exporters[1]", ("debug", "not defined")),
    ("pipeline-no-exporters.yaml", "service.pipelines.traces.exporters", ("at least one exporter",)),
    ("pipeline-no-receivers.yaml", "service.pipelines.traces.receivers", ("at least one receiver",)),
    ("pipeline-duplicate-exporter.yaml", "service.pipelines.traces.exporters", ("twice",)),
    ("pipeline-unknown-key.yaml", "service.pipelines.traces.exporter", ("unknown key", "exporters")),
    ("metrics-pipeline.yaml", "service.pipelines.metrics", ("traces pipelines only",)),
    ("batch-not-last.yaml", "service.pipelines.traces.processors[0]", ("batch must be the last processor",)),
    ("no-service.yaml", "service", ("missing", "pipelines")),
    ("no-pipelines.yaml", "service.pipelines", ("at least one pipeline",)),
    ("unknown-service-key.yaml", "service.telemetry.traces", ("unknown key", "logs", "metrics")),
    ("undefined-extension.yaml", "service.extensions[0]", ("health_check", "not defined under extensions")),
    ("unset-env-var.yaml", "exporters.postgres.dsn", ("TRACETABLES_TEST_UNSET_VARIABLE", "not set", ":-")),
    ("unsupported-reference.yaml", "exporters.postgres.dsn", ("unsupported reference", "${foo}", "${env:NAME}")),
    ("otlp-no-protocols.yaml", "receivers.otlp.protocols", ("at least one of grpc, http",)),
    ("debug-verbosity.yaml", "exporters.debug.verbosity", ("basic, normal or detailed", "loud")),
    ("num-consumers-zero.yaml", "exporters.postgres.sending_queue.num_consumers", ("between 1 and 64", "0")),
    (
        "retention-negative-interval.yaml",
        "extensions.tracing_config.retention.check_interval",
        ("expected a duration", "-5s"),
    ),
    (
        "retention-zero-batch.yaml",
        "extensions.tracing_config.retention.max_traces_per_transaction",
        ("between 1 and 10000",),
    ),
    ("retry-max-below-initial.yaml", "exporters.postgres.retry_on_failure.max_interval", (">= initial_interval",)),
    ("logs-level.yaml", "service.telemetry.logs.level", ("debug, info, warn or error", "chatty")),
    ("top-level-list.yaml", FILE, ("top level must be a mapping",)),
    ("invalid-yaml.yaml", FILE, ("not valid YAML", "line 14")),
    ("duplicate-key.yaml", FILE, ("given twice", "send_batch_size", "line 10")),
    ("memory-limiter-no-limit.yaml", "processors.memory_limiter", ("one of limit_mib or limit_percentage",)),
    ("memory-limiter-both-limits.yaml", "processors.memory_limiter.limit_percentage", ("not both",)),
    ("memory-limiter-negative-limit-mib.yaml", "processors.memory_limiter.limit_mib", (">= 0", "-1")),
    ("memory-limiter-spike-not-below-limit.yaml", "processors.memory_limiter.spike_limit_mib", ("< limit_mib", "512")),
    (
        "memory-limiter-spike-percentage-not-below-limit.yaml",
        "processors.memory_limiter.spike_limit_percentage",
        ("< limit_percentage", "60"),
    ),
    (
        "memory-limiter-percentage-out-of-range.yaml",
        "processors.memory_limiter.limit_percentage",
        ("between 1 and 100", "150"),
    ),
    (
        "memory-limiter-spike-unit-mismatch.yaml",
        "processors.memory_limiter.spike_limit_percentage",
        ("limit_percentage", "spike_limit_mib"),
    ),
    ("memory-limiter-zero-check-interval.yaml", "processors.memory_limiter.check_interval", ("> 0",)),
    ("pii-masking-unknown-pattern.yaml", "processors.pii_masking.patterns", ("unknown detector", "'passport'")),
    ("pii-masking-hash-without-secret.yaml", "processors.pii_masking.hash_secret", ("at least 16",)),
    ("pii-masking-bad-mode.yaml", "processors.pii_masking.mode", ("'placeholder' or 'hash'", "'scramble'")),
    (
        "trace-level-unknown-level.yaml",
        "processors.trace_level.default_level",
        ("minimal, standard or verbose", "chatty"),
    ),
    ("trace-level-zero-refresh.yaml", "extensions.tracing_config.refresh_interval", ("> 0",)),
    (
        "trace-level-missing-extension.yaml",
        "processors.trace_level.tracing_config",
        ("'tracing_config'", "not defined"),
    ),
    (
        "trace-level-extension-not-enabled.yaml",
        "processors.trace_level.tracing_config",
        ("not listed in service.extensions",),
    ),
    ("webhook-redaction-negative-body.yaml", "processors.webhook_redaction.max_body_bytes", (">= 0", "-5")),
    (
        "tls-cert-file-missing.yaml",
        "receivers.otlp.protocols.http.tls.cert_file",
        ("cannot read", "no-such-dir/server.crt"),
    ),
    ("tls-no-key-file.yaml", "receivers.otlp.protocols.grpc.tls.key_file", ("required",)),
    ("tls-old-min-version.yaml", "receivers.otlp.protocols.http.tls.min_version", ('"1.2" or "1.3"', "'1.1'")),
    (
        "cors-two-wildcards.yaml",
        "receivers.otlp.protocols.http.cors.allowed_origins[1]",
        ("at most one '*'", "https://*.*.example.com"),
    ),
    ("cors-negative-max-age.yaml", "receivers.otlp.protocols.http.cors.max_age", (">= 0", "-1")),
]


class TestBadConfigFiles:
    @pytest.mark.parametrize(
        ("name", "key_path", "words"), BAD_CASES, ids=[c[0].removesuffix(".yaml") for c in BAD_CASES]
    )
    def test_bad_config_names_key_path_and_problem(self, name: str, key_path: object, words: tuple[str, ...]) -> None:
        """A config breaking one rule is refused; the message starts with the key path and says what is wrong."""
        path = BAD_CONFIGS / name
        with pytest.raises(ConfigError) as info:
            load_config(path, env={})
        message = str(info.value)
        expected = str(path) if key_path is FILE else str(key_path)
        assert message.startswith(f"{expected}: "), message
        for word in words:
            assert word.lower() in message.lower(), f"{word!r} not in {message!r}"

    def test_bad_config_files_each_have_a_case(self) -> None:
        """Every file in testdata/config is checked, and every case has its file."""
        on_disk = {p.name for p in BAD_CONFIGS.glob("*.yaml")}
        assert on_disk == {c[0] for c in BAD_CASES}

    def test_missing_file_names_the_file(self, tmp_path: Path) -> None:
        """A config file that does not exist is a ConfigError naming the file."""
        path = tmp_path / "nowhere" / "otel-config.yaml"
        with pytest.raises(ConfigError, match="cannot read config file") as info:
            load_config(path, env={})
        assert str(info.value).startswith(f"{path}: ")

    def test_unreadable_file_names_the_file(self, tmp_path: Path) -> None:
        """A path that cannot be read as a file (a directory) is a ConfigError naming it."""
        with pytest.raises(ConfigError, match="cannot read config file") as info:
            load_config(tmp_path, env={})
        assert str(info.value).startswith(f"{tmp_path}: ")

    def test_non_utf8_file_names_the_file(self, tmp_path: Path) -> None:
        """A file that is not UTF-8 text is a ConfigError naming it, not a UnicodeDecodeError."""
        path = tmp_path / "latin1.yaml"
        path.write_bytes(minimal().encode() + b"# caf\xe9\n")
        with pytest.raises(ConfigError, match="cannot read config file") as info:
            load_config(path, env={})
        assert str(info.value).startswith(f"{path}: ")

    def test_empty_file_asks_for_a_service(self, tmp_path: Path) -> None:
        """An empty file is refused for its missing service section."""
        with pytest.raises(ConfigError, match=r"^service: missing"):
            load_text(tmp_path, "# nothing yet\n")

    def test_connectors_are_refused(self, tmp_path: Path) -> None:
        """A connectors section with content is refused by name."""
        with pytest.raises(ConfigError, match=r"^connectors: "):
            load_text(tmp_path, minimal() + "connectors:\n  forward: {}\n")


class TestEnvSubstitution:
    def test_env_reference_is_replaced(self, tmp_path: Path) -> None:
        """``${env:X}`` takes the variable's value."""
        config = load_text(tmp_path, minimal("${env:MY_DSN}"), {"MY_DSN": "postgresql://u@h/db"})
        assert postgres(config).dsn == "postgresql://u@h/db"

    def test_env_default_used_when_unset(self, tmp_path: Path) -> None:
        """``${env:X:-default}`` takes the default when X is unset."""
        config = load_text(tmp_path, minimal("${env:MY_DSN:-host=fallback dbname=spans}"))
        assert postgres(config).dsn == "host=fallback dbname=spans"

    def test_env_default_ignored_when_set(self, tmp_path: Path) -> None:
        """``${env:X:-default}`` takes X's value when X is set."""
        config = load_text(tmp_path, minimal("${env:MY_DSN:-host=fallback}"), {"MY_DSN": "host=real"})
        assert postgres(config).dsn == "host=real"

    def test_env_set_but_empty_is_kept(self, tmp_path: Path) -> None:
        """As in the Collector, a variable set to the empty string is used, not the default."""
        config = load_text(tmp_path, minimal("${env:MY_DSN:-host=fallback}"), {"MY_DSN": ""})
        assert postgres(config).dsn == ""

    def test_env_double_dollar_is_a_literal_dollar(self, tmp_path: Path) -> None:
        """``$$`` is one literal ``$``, and ``$${env:X}`` is not expanded."""
        assert postgres(load_text(tmp_path, minimal("'host=h password=pa$$word'"))).dsn == "host=h password=pa$word"
        assert postgres(load_text(tmp_path, minimal("'$${env:NOT_EXPANDED}'"))).dsn == "${env:NOT_EXPANDED}"

    def test_env_whole_value_is_parsed_as_yaml(self, tmp_path: Path) -> None:
        """A value that is one reference only is typed as YAML: a number becomes an int."""
        assert expand_env({"port": "${env:PORT}"}, {"PORT": "4317"}) == {"port": 4317}
        text = minimal() + "processors:\n  batch:\n    send_batch_size: ${env:SIZE}\n    timeout: ${env:WAIT:-50ms}\n"
        text = text.replace("      exporters: [postgres]", "      processors: [batch]\n      exporters: [postgres]")
        config = load_text(tmp_path, text, {"SIZE": "512"})
        assert config.processors["batch"].send_batch_size == 512
        assert config.processors["batch"].timeout == timedelta(milliseconds=50)

    def test_env_whole_value_bool_is_parsed(self, tmp_path: Path) -> None:
        """A whole-value reference to ``false`` sets a boolean."""
        text = minimal().replace('    dsn: ""\n', '    dsn: ""\n    migrate_on_start: ${env:MIGRATE}\n')
        assert postgres(load_text(tmp_path, text, {"MIGRATE": "false"})).migrate_on_start is False

    def test_env_whole_value_string_is_kept_verbatim(self, tmp_path: Path) -> None:
        """A string value from a whole-value reference is not cut at `` #`` nor unquoted by YAML."""
        dsn = "host=db password='s3cret #1' sslmode=require"
        assert postgres(load_text(tmp_path, minimal("${env:MY_DSN}"), {"MY_DSN": dsn})).dsn == dsn
        assert expand_env("${env:Q}", {"Q": "'quoted'"}) == "'quoted'"

    def test_env_inside_longer_string_stays_a_string(self, tmp_path: Path) -> None:
        """A reference inside a longer string is substituted in place, the result stays a string."""
        text = minimal().replace("127.0.0.1:4318", "${env:HOST:-127.0.0.1}:${env:PORT}")
        config = load_text(tmp_path, text, {"PORT": "14318"})
        assert config.receivers["otlp"].protocols.http.endpoint == "127.0.0.1:14318"
        assert expand_env("v${env:N}", {"N": "1"}) == "v1"

    def test_env_substitution_reaches_lists(self, tmp_path: Path) -> None:
        """References inside lists (pipeline ids) are expanded too."""
        text = minimal().replace("exporters: [postgres]", "exporters:\n        - ${env:EXPORTER}")
        config = load_text(tmp_path, text, {"EXPORTER": "postgres"})
        assert config.service.pipelines["traces"].exporters == ("postgres",)

    def test_env_unset_in_list_names_index(self, tmp_path: Path) -> None:
        """An unset variable inside a list is reported with the list index in the key path."""
        text = minimal().replace("exporters: [postgres]", "exporters:\n        - ${env:EXPORTER}")
        with pytest.raises(
            ConfigError, match=r"^service\.pipelines\.traces\.exporters\[0\]: environment variable EXPORTER"
        ):
            load_text(tmp_path, text)

    def test_env_defaults_to_process_environment(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """With no env mapping given, the process environment is used."""
        monkeypatch.setenv("TT_CONFIG_TEST_DSN", "host=from-process")
        monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
        path = tmp_path / "c.yaml"
        path.write_text(minimal("${env:TT_CONFIG_TEST_DSN}"), encoding="utf-8")
        assert postgres(load_config(path)).dsn == "host=from-process"

    def test_database_url_fills_empty_dsn(self, tmp_path: Path) -> None:
        """TRACETABLES_DATABASE_URL fills a postgres exporter whose dsn is empty or absent."""
        env = {DATABASE_URL_ENV: "postgresql://u@h/tt"}
        assert postgres(load_text(tmp_path, minimal('""'), env)).dsn == "postgresql://u@h/tt"
        assert (
            postgres(load_text(tmp_path, minimal('""').replace('    dsn: ""\n', ""), env)).dsn == "postgresql://u@h/tt"
        )

    def test_database_url_does_not_override_explicit_dsn(self, tmp_path: Path) -> None:
        """An explicit dsn in the file wins over TRACETABLES_DATABASE_URL."""
        config = load_text(tmp_path, minimal("host=explicit"), {DATABASE_URL_ENV: "host=from-env"})
        assert postgres(config).dsn == "host=explicit"

    def test_database_url_empty_means_embedded(self, tmp_path: Path) -> None:
        """An empty TRACETABLES_DATABASE_URL leaves the dsn empty (the embedded server)."""
        assert postgres(load_text(tmp_path, minimal(), {DATABASE_URL_ENV: ""})).dsn == ""


IDS_CONFIG = """\
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:4317
  otlp/internal:
    protocols:
      http:
        endpoint: 127.0.0.1:14318
processors:
  batch:
  batch/small:
    send_batch_size: 10
exporters:
  postgres:
  postgres/archive:
    dsn: host=archive dbname=old
  debug/verbose:
    verbosity: detailed
service:
  pipelines:
    traces:
      receivers: [otlp, otlp/internal]
      processors: [batch]
      exporters: [postgres, debug/verbose]
    traces/archive:
      receivers: [otlp/internal]
      processors: [batch/small]
      exporters: [postgres/archive]
"""


class TestComponentIds:
    def test_component_ids_with_names_are_accepted(self, tmp_path: Path) -> None:
        """``type/name`` ids get their type's config and can be referenced from pipelines."""
        config = load_text(tmp_path, IDS_CONFIG, {DATABASE_URL_ENV: "host=main"})
        assert set(config.receivers) == {"otlp", "otlp/internal"}
        assert config.receivers["otlp/internal"].protocols.http.endpoint == "127.0.0.1:14318"
        assert config.receivers["otlp/internal"].protocols.grpc is None
        assert config.processors["batch/small"].send_batch_size == 10
        assert postgres(config, "postgres/archive").dsn == "host=archive dbname=old"
        assert postgres(config, "postgres").dsn == "host=main"
        assert config.exporters["debug/verbose"] == DebugExporterConfig(verbosity="detailed")
        assert config.service.pipelines == {
            "traces": PipelineConfig(("otlp", "otlp/internal"), ("batch",), ("postgres", "debug/verbose")),
            "traces/archive": PipelineConfig(("otlp/internal",), ("batch/small",), ("postgres/archive",)),
        }

    def test_component_type_is_the_part_before_the_slash(self) -> None:
        """``component_type`` strips the name; a name may itself hold slashes."""
        assert component_type("otlp") == "otlp"
        assert component_type("otlp/internal") == "otlp"
        assert component_type("postgres/a/b") == "postgres"

    def test_component_named_id_with_unknown_type_is_refused(self, tmp_path: Path) -> None:
        """The type part of ``type/name`` must be a known type."""
        with pytest.raises(ConfigError, match=r"^exporters\.kafka/archive: unknown exporter type 'kafka'"):
            load_text(tmp_path, minimal().replace("exporters:\n", "exporters:\n  kafka/archive: {}\n"))

    def test_pipeline_needs_the_exact_id(self, tmp_path: Path) -> None:
        """A pipeline naming ``otlp`` does not match a receiver defined only as ``otlp/internal``."""
        text = minimal().replace("  otlp:\n", "  otlp/internal:\n", 1)
        with pytest.raises(ConfigError, match=r"^service\.pipelines\.traces\.receivers\[0\]: 'otlp' is not defined"):
            load_text(tmp_path, text)


class TestSections:
    def test_protocol_with_no_settings_is_enabled_with_defaults(self, tmp_path: Path) -> None:
        """``grpc:`` and ``http:`` with nothing under them turn both on with defaults, as in the Collector."""
        text = minimal().replace("      http:\n        endpoint: 127.0.0.1:4318\n", "      grpc:\n      http:\n")
        protocols = load_text(tmp_path, text).receivers["otlp"].protocols
        assert protocols == Protocols(grpc=GrpcConfig(), http=HttpConfig())

    def test_protocol_left_out_is_not_served(self, tmp_path: Path) -> None:
        """A protocol absent from ``protocols`` is None (not served)."""
        assert load_text(tmp_path, minimal()).receivers["otlp"].protocols.grpc is None

    def test_component_with_no_settings_gets_defaults(self, tmp_path: Path) -> None:
        """``batch:`` with nothing under it is the batch processor with its defaults."""
        text = minimal() + "processors:\n  batch:\n"
        assert load_text(tmp_path, text).processors["batch"] == BatchProcessorConfig()

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("1m30s", timedelta(seconds=90)),
            ("1.5s", timedelta(seconds=1.5)),
            ("250us", timedelta(microseconds=250)),
            ("0", timedelta(0)),
            ("2", timedelta(seconds=2)),
        ],
    )
    def test_duration_go_style_is_parsed(self, tmp_path: Path, text: str, expected: timedelta) -> None:
        """Go-style durations and bare numbers of seconds are accepted."""
        config = load_text(tmp_path, minimal() + f"processors:\n  batch:\n    timeout: {text}\n")
        assert config.processors["batch"].timeout == expected

    @pytest.mark.parametrize("text", ["-1s", "5 parsecs", "1s5", "''", "true"])
    def test_duration_malformed_is_refused(self, tmp_path: Path, text: str) -> None:
        """Negative, unit-less tails, empty and boolean durations are refused with the key path."""
        with pytest.raises(ConfigError, match=r"^processors\.batch\.timeout: "):
            load_text(tmp_path, minimal() + f"processors:\n  batch:\n    timeout: {text}\n")

    @pytest.mark.parametrize("endpoint", [":4318", "[::1]:4318", "localhost:0", "0.0.0.0:65535"])
    def test_endpoint_forms_are_accepted(self, tmp_path: Path, endpoint: str) -> None:
        """host:port endpoints, with an empty host, IPv6 brackets, port 0 or 65535, are accepted."""
        text = minimal().replace("127.0.0.1:4318", f'"{endpoint}"')
        assert load_text(tmp_path, text).receivers["otlp"].protocols.http.endpoint == endpoint

    @pytest.mark.parametrize("level", ["debug", "INFO", "warn", "warning", "error"])
    def test_logs_level_accepts_known_levels(self, tmp_path: Path, level: str) -> None:
        """The known log levels are accepted in any case."""
        text = minimal() + f"  telemetry:\n    logs:\n      level: {level}\n"
        assert load_text(tmp_path, text).service.telemetry.logs.level == level


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA with a server and a client certificate, as PEM files."""
    return make_pki(tmp_path_factory.mktemp("pki"))


class TestReceiverTlsAndCors:
    """``tls`` and ``cors`` under the OTLP protocols; the files are real, made by a throwaway CA."""

    @staticmethod
    def _with(protocol: str, block: str) -> str:
        text = minimal().replace("      http:\n        endpoint: 127.0.0.1:4318\n", f"      {protocol}:\n{block}")
        assert block in text
        return text

    @staticmethod
    def _tls(cert: Path, key: Path, extra: str = "") -> str:
        return f"        tls:\n          cert_file: {cert}\n          key_file: {key}\n{extra}"

    def test_tls_and_cors_load_with_their_values(self, tmp_path: Path, pki: Pki) -> None:
        """A full tls and cors block is loaded as given."""
        tls = self._tls(
            pki.server.cert, pki.server.key, f'          client_ca_file: {pki.ca}\n          min_version: "1.3"\n'
        )
        cors = (
            '        cors:\n          allowed_origins: ["https://*.example.com"]\n          allowed_headers: [X-Tenant]\n'
            "          max_age: 7200\n"
        )
        http = load_text(tmp_path, self._with("http", tls + cors)).receivers["otlp"].protocols.http
        assert http.tls == TlsServerConfig(str(pki.server.cert), str(pki.server.key), str(pki.ca), "1.3")
        assert http.cors == CorsConfig(("https://*.example.com",), ("X-Tenant",), 7200)

    def test_key_of_another_cert_names_key_file(self, tmp_path: Path, pki: Pki) -> None:
        """A key that does not belong to the certificate is refused at load, naming key_file."""
        with pytest.raises(ConfigError, match=r"^receivers\.otlp\.protocols\.http\.tls\.key_file: .*cannot be loaded"):
            load_text(tmp_path, self._with("http", self._tls(pki.server.cert, pki.client.key)))

    def test_cert_file_without_a_certificate_names_cert_file(self, tmp_path: Path, pki: Pki) -> None:
        """A cert_file holding no PEM certificate (here: the key) is refused, naming cert_file."""
        with pytest.raises(
            ConfigError, match=r"^receivers\.otlp\.protocols\.grpc\.tls\.cert_file: .*no PEM certificate"
        ):
            load_text(tmp_path, self._with("grpc", self._tls(pki.server.key, pki.server.key)))

    def test_encrypted_key_file_is_refused_not_prompted_for(self, tmp_path: Path, pki: Pki) -> None:
        """A password-protected key is a config error (there is no terminal to ask a password on)."""
        key = serialization.load_pem_private_key(pki.server.key.read_bytes(), password=None)
        locked = tmp_path / "locked.key"
        locked.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"hunter2"),
            )
        )
        with pytest.raises(ConfigError, match=r"^receivers\.otlp\.protocols\.http\.tls\.key_file: .*encrypted"):
            load_text(tmp_path, self._with("http", self._tls(pki.server.cert, locked)))

    def test_unreadable_key_file_names_key_file(self, tmp_path: Path, pki: Pki) -> None:
        """A key_file that does not exist is refused, naming key_file and the path."""
        missing = tmp_path / "gone.key"
        with pytest.raises(
            ConfigError, match=r"^receivers\.otlp\.protocols\.http\.tls\.key_file: cannot read .*gone\.key"
        ):
            load_text(tmp_path, self._with("http", self._tls(pki.server.cert, missing)))

    def test_client_ca_file_without_a_certificate_names_it(self, tmp_path: Path, pki: Pki) -> None:
        """A client_ca_file that holds no certificate is refused, naming client_ca_file."""
        tls = self._tls(pki.server.cert, pki.server.key, f"          client_ca_file: {pki.server.key}\n")
        with pytest.raises(ConfigError, match=r"^receivers\.otlp\.protocols\.http\.tls\.client_ca_file: "):
            load_text(tmp_path, self._with("http", tls))

    def test_grpc_min_version_1_3_is_refused(self, tmp_path: Path, pki: Pki) -> None:
        """grpcio cannot refuse TLS 1.2, so asking the gRPC receiver to is an error, not a silent no-op."""
        tls = self._tls(pki.server.cert, pki.server.key, '          min_version: "1.3"\n')
        with pytest.raises(
            ConfigError, match=r"^receivers\.otlp\.protocols\.grpc\.tls\.min_version: .*cannot refuse TLS 1\.2"
        ):
            load_text(tmp_path, self._with("grpc", tls))

    def test_tls_with_nothing_under_it_asks_for_cert_file(self, tmp_path: Path) -> None:
        """``tls:`` alone is not plaintext by accident: it asks for the certificate."""
        with pytest.raises(ConfigError, match=r"^receivers\.otlp\.protocols\.http\.tls\.cert_file: required"):
            load_text(tmp_path, self._with("http", "        tls:\n"))
