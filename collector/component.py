"""The component model, in the OTel Collector's image.

Every receiver, processor, exporter and extension type has one :class:`Factory`: its type
name (the ``otlp`` of ``otlp/internal``), its config class, and ``create``. The factories
of this distribution are listed in one place, :mod:`tracetables.collector.components`;
the config loader and the service only ever see a :class:`Registry`.

Every component has one :class:`Lifecycle`: ``start(host)`` and ``shutdown()``, each safe
to call twice, and ``shutdown`` safe before ``start``. Through the :class:`Host` a
component finds the extensions it depends on by id (the flow settings, later auth and
storage) and the collector's store: it never borrows a neighbour's connection or DSN.

Start order is the Collector's: extensions, exporters, processors, receivers; shutdown
is the reverse, so every stage drains into a live consumer.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from .batch import SpanBatch
from .consumer import Consumer
from .errors import ConfigError
from .telemetry import Telemetry

ConfigT = TypeVar("ConfigT")
ExtensionT = TypeVar("ExtensionT")


class Kind(StrEnum):
    """The four kinds of component a config names."""

    RECEIVER = "receiver"
    PROCESSOR = "processor"
    EXPORTER = "exporter"
    EXTENSION = "extension"

    @property
    def section(self) -> str:
        """The config section that holds this kind: ``receivers``, ``processors`` …"""
        return f"{self.value}s"


class Stability(StrEnum):
    """How settled a component's config and behaviour are (the Collector's levels)."""

    DEVELOPMENT = "development"
    ALPHA = "alpha"
    BETA = "beta"
    STABLE = "stable"


def component_type(component_id: str) -> str:
    """``"otlp/internal"`` → ``"otlp"``."""
    return component_id.split("/", 1)[0]


class Host(Protocol):
    """What a starting component may ask of the collector running it."""

    def extension(self, component_id: str) -> object:
        """The started extension with this id.

        Raises:
            ConfigError: no such extension is configured in ``service.extensions``.
        """
        ...

    async def store_dsn(self) -> str:
        """The DSN of the collector's store: the postgres exporter's ``dsn``, or the
        embedded server the host starts (once, on first demand) when none is set."""
        ...

    @property
    def telemetry(self) -> Telemetry:
        """The collector's own metrics, where components count what they do."""
        ...

    def status(self) -> ServiceStatus:
        """Whether the pipelines run, and which there are."""
        ...


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """What ``Host.status`` reports.

    Attributes:
        state: ``starting``, ``running`` (every component started) or ``stopping``.
        pipelines: the pipeline ids.
    """

    state: str
    pipelines: tuple[str, ...]


class Lifecycle(Protocol):
    """Start and stop; both safe twice, ``shutdown`` safe before ``start``."""

    async def start(self, host: Host) -> None:
        """Acquire what the component needs; raises if it cannot run at all."""
        ...

    async def shutdown(self) -> None:
        """Release everything ``start`` acquired; finishes work under way first."""
        ...


@dataclass(slots=True)
class ExportResult:
    """The outcome of a successful export.

    Attributes:
        rejected: per ``ResourceSpans`` index of the batch, spans refused for good
            (the rest were stored); empty when all were stored.
        reason: why the first refused span was refused, safe to send to a client.
    """

    rejected: dict[int, int] = field(default_factory=dict)
    reason: str = ""


@runtime_checkable
class Exporter(Lifecycle, Protocol):
    """Writes batches somewhere durable (or, for ``debug``, to the log)."""

    @property
    def concurrency(self) -> int:
        """How many ``export`` calls make progress at once (e.g. connections)."""
        ...

    async def export(self, batch: SpanBatch) -> ExportResult:
        """Write a batch; returns when it is durable.

        The exporter only reads the batch. Raises ``RetryableError`` when the same
        batch may succeed later, ``PermanentError`` when it cannot.
        """
        ...


class Processor(Lifecycle, Protocol):
    """A step run on every request before the batch processor: takes ownership of a
    batch and returns it (changed or new). Never calls the next stage; the pipeline does."""

    def __call__(self, batch: SpanBatch) -> SpanBatch: ...


class Receiver(Lifecycle, Protocol):
    """Takes data from outside and hands it to its consumer (the pipelines)."""


class StatelessLifecycle:
    """The lifecycle of a component that holds nothing between batches."""

    async def start(self, host: Host) -> None:
        """Nothing to acquire."""

    async def shutdown(self) -> None:
        """Nothing to release."""


@dataclass(frozen=True, slots=True)
class CreateSettings:
    """What every ``create`` gets besides its config.

    Attributes:
        id: the component id as configured, e.g. ``otlp/internal``.
        consumer: for receivers, the pipelines they feed; None for the other kinds.
    """

    id: str
    consumer: Consumer | None = None


@dataclass(frozen=True, slots=True)
class Factory(Generic[ConfigT]):
    """One component type.

    Attributes:
        kind: receiver, processor, exporter or extension.
        type: the type name used in config ids.
        config_class: the frozen dataclass its config section is built into.
        create: builds a component from its settings and config.
        stability: how settled it is.
        description: one line for ``tracetables components``.
    """

    kind: Kind
    type: str
    config_class: builtins.type[ConfigT]
    create: Callable[[CreateSettings, ConfigT], Any]
    stability: Stability
    description: str
    from_env: Callable[[ConfigT, Mapping[str, str]], ConfigT] | None = None
    """Fills in what the environment supplies when the file leaves it empty (the
    postgres exporter's DSN from ``TRACETABLES_DATABASE_URL``); run at load, so
    components themselves never read the environment."""


class Store(Protocol):
    """The collector's database, opened by the host on first demand."""

    async def open(self) -> str:
        """Start (or find) the database; returns its DSN."""
        ...

    async def close(self) -> None:
        """Stop what ``open`` started; safe twice."""
        ...


class Registry:
    """The factories of one distribution, by kind and type name."""

    def __init__(self, factories: list[Factory[Any]], store: Callable[[Mapping[str, Any]], Store]) -> None:
        """Args:
        factories: every component type of the distribution.
        store: builds the host's store from the configured exporters.
        """
        self.store = store
        self._by_kind: dict[Kind, dict[str, Factory[Any]]] = {kind: {} for kind in Kind}
        for factory in factories:
            table = self._by_kind[factory.kind]
            if factory.type in table:
                raise ValueError(f"two {factory.kind} factories named {factory.type!r}")
            table[factory.type] = factory

    def __iter__(self) -> Iterator[Factory[Any]]:
        for kind in Kind:
            yield from self._by_kind[kind].values()

    def types(self, kind: Kind) -> Mapping[str, Factory[Any]]:
        """The factories of one kind, by type name."""
        return self._by_kind[kind]

    def factory(self, kind: Kind, component_id: str) -> Factory[Any]:
        """The factory for a configured id.

        Raises:
            ConfigError: no factory of that kind has the id's type; names the known ones.
        """
        ctype = component_type(component_id)
        found = self._by_kind[kind].get(ctype)
        if found is None:
            known = ", ".join(sorted(self._by_kind[kind])) or "none"
            raise ConfigError(f"{kind.section}.{component_id}: unknown {kind} type {ctype!r} (known: {known})")
        return found


def typed_extension(host: Host, component_id: str, kind: type[ExtensionT], path: str) -> ExtensionT:
    """The extension ``component_id`` from the host, checked to be a ``kind``.

    Raises:
        ConfigError: it is missing or of another type; the message names ``path``.
    """
    found = host.extension(component_id)
    if not isinstance(found, kind):
        raise ConfigError(f"{path}: extension {component_id!r} is a {type(found).__name__}, not a {kind.__name__}")
    return found
