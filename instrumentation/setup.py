"""``configure``: OTel SDK set-up for services that have none yet.

Services already on OpenTelemetry need nothing from here. Others call
``configure(service_name="bot")`` once at start: a ``TracerProvider`` with a
``BatchSpanProcessor`` and an OTLP exporter becomes the global provider. The standard
``OTEL_*`` environment variables apply (``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES`` …) wherever an argument is left out.
Needs the SDK: ``pip install 'tracetables[sdk]'``.
"""

from __future__ import annotations

from typing import Any


def configure(
    endpoint: str | None = None,
    service_name: str | None = None,
    protocol: str = "http/protobuf",
    resource_attributes: dict[str, Any] | None = None,
) -> Any:
    """Install and return a global ``TracerProvider`` exporting OTLP to ``endpoint``.

    Args:
        endpoint: the collector, e.g. ``http://localhost:4318/v1/traces`` (HTTP) or
            ``localhost:4317`` (gRPC); default: the OTEL_* environment, else localhost.
        service_name: ``service.name``; default: ``OTEL_SERVICE_NAME``.
        protocol: ``http/protobuf`` or ``grpc``.
        resource_attributes: more resource attributes.

    Raises:
        ImportError: the OTel SDK is not installed.
        ValueError: an unknown protocol.
    """
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporter: Any
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        exporter = HttpExporter(endpoint=endpoint) if endpoint else HttpExporter()
    elif protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        exporter = GrpcExporter(endpoint=endpoint, insecure=True) if endpoint else GrpcExporter()
    else:
        raise ValueError(f"protocol must be 'http/protobuf' or 'grpc', got {protocol!r}")
    attributes = dict(resource_attributes or {})
    if service_name:
        attributes["service.name"] = service_name
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider
