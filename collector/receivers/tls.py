"""TLS for the OTLP receivers, in the OTel Collector's ``configtls`` server shape (``tls:``).

The files are read and the certificate and key loaded together once at config load, so a
wrong path or a key that does not belong to the certificate is a config error naming the
key, not a failure at the first handshake.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc

from ..errors import ConfigError

TLS_VERSIONS: dict[str, ssl.TLSVersion] = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
_PEM_CERT = b"-----BEGIN CERTIFICATE-----"


@dataclass(frozen=True, slots=True)
class TlsServerConfig:
    """``receivers.otlp.protocols.{grpc,http}.tls``: serve TLS instead of plaintext."""

    cert_file: str = ""
    """PEM certificate chain the receiver presents (leaf first)."""
    key_file: str = ""
    """PEM private key of ``cert_file``."""
    client_ca_file: str = ""
    """PEM CA bundle; when set, clients must present a certificate it signed (mutual TLS)."""
    min_version: str = "1.2"
    """Lowest TLS version accepted: ``"1.2"`` or ``"1.3"``."""

    def validate(self, path: str) -> None:
        if not self.cert_file:
            raise ConfigError(f"{path}.cert_file: required when tls is set")
        if not self.key_file:
            raise ConfigError(f"{path}.key_file: required when tls is set")
        if self.min_version not in TLS_VERSIONS:
            raise ConfigError(
                f'{path}.min_version: must be "1.2" or "1.3" (older versions are not offered), got {self.min_version!r}'
            )
        cert = _read(self.cert_file, f"{path}.cert_file")
        if _PEM_CERT not in cert:
            raise ConfigError(f"{path}.cert_file: {self.cert_file} holds no PEM certificate")
        _read(self.key_file, f"{path}.key_file")
        if self.client_ca_file:
            ca = _read(self.client_ca_file, f"{path}.client_ca_file")
            if _PEM_CERT not in ca:
                raise ConfigError(f"{path}.client_ca_file: {self.client_ca_file} holds no PEM certificate")
        self.ssl_context(path)  # loads cert, key and CA together: the errors below name the key

    def ssl_context(self, path: str = "tls") -> ssl.SSLContext:
        """A server ``SSLContext`` for aiohttp (and, at load, to check the files belong together).

        Raises:
            ConfigError: the certificate, key or client CA cannot be loaded; names the key.
        """
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = TLS_VERSIONS[self.min_version]
        try:
            # a password callback, so that an encrypted key fails here instead of OpenSSL
            # prompting on the terminal of a service that has none
            context.load_cert_chain(self.cert_file, self.key_file, password=_no_password)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"{path}.key_file: {self.key_file} cannot be loaded with cert_file {self.cert_file} "
                f"(not its key, encrypted, or not PEM): {exc}"
            ) from exc
        if self.client_ca_file:
            try:
                context.load_verify_locations(cafile=self.client_ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"{path}.client_ca_file: cannot load {self.client_ca_file}: {exc}") from exc
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def grpc_credentials(self, path: str = "tls") -> grpc.ServerCredentials:
        """Server credentials for ``grpc.aio.Server.add_secure_port``.

        Raises:
            ConfigError: a file can no longer be read; names the key.
        """
        pair = (_read(self.key_file, f"{path}.key_file"), _read(self.cert_file, f"{path}.cert_file"))
        roots = _read(self.client_ca_file, f"{path}.client_ca_file") if self.client_ca_file else None
        return grpc.ssl_server_credentials([pair], root_certificates=roots, require_client_auth=roots is not None)


def _no_password() -> bytes:
    return b""


def _read(file: str, path: str) -> bytes:
    try:
        return Path(file).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {file}: {exc.strerror or exc}") from exc
