"""The ``otlp`` receiver: OTLP/gRPC and OTLP/HTTP servers of one config, one component."""

from __future__ import annotations

from ..component import Host
from ..consumer import Consumer
from .config import OtlpReceiverConfig
from .otlp_grpc import OtlpGrpcReceiver
from .otlp_http import OtlpHttpReceiver


class OtlpReceiver:
    """Serves the protocols its config enables; a protocol left out is not served.

    Attributes:
        grpc, http: the protocol servers (None when not configured); ``.port`` is the
            bound port once started.
    """

    def __init__(self, config: OtlpReceiverConfig, consumer: Consumer, receiver_id: str = "otlp") -> None:
        protocols, limits = config.protocols, config.limits
        self.grpc = (
            OtlpGrpcReceiver(protocols.grpc, limits, consumer, receiver_id) if protocols.grpc is not None else None
        )
        self.http = (
            OtlpHttpReceiver(protocols.http, limits, consumer, receiver_id) if protocols.http is not None else None
        )

    @property
    def servers(self) -> dict[str, OtlpGrpcReceiver | OtlpHttpReceiver]:
        """The configured servers by transport name (``grpc``, ``http``)."""
        return {name: server for name, server in (("grpc", self.grpc), ("http", self.http)) if server is not None}

    async def start(self, host: Host) -> None:
        """Bind every protocol; if one fails, the others are stopped again."""
        try:
            for server in self.servers.values():
                server.observer.telemetry = host.telemetry
                await server.start()
        except BaseException:
            await self.shutdown()
            raise

    async def stop(self, grace: float) -> None:
        """Stop accepting requests; those under way get ``grace`` seconds. Safe twice."""
        for server in self.servers.values():
            await server.stop(grace)

    async def shutdown(self) -> None:
        """:meth:`stop` with the default grace."""
        await self.stop(5.0)
