"""TLS for both listeners, and the start-up warnings about exposed plaintext listeners.

One certificate chain and key (`--tls-cert`, `--tls-key`) serve gRPC (grpcs) and the
WebSocket listener (wss). The files are read once at start; a bad file fails the start
with a ConfigError naming it, not the first handshake.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc

from .config import ConfigError, ServerConfig


@dataclass(frozen=True, slots=True)
class ServerTls:
    """The credentials each listener needs, built from the same PEM files."""

    grpc_credentials: grpc.ServerCredentials
    ssl_context: ssl.SSLContext

    @classmethod
    def from_config(cls, config: ServerConfig) -> ServerTls | None:
        """The listeners' TLS, or None when no certificate is configured."""
        if not config.tls_enabled:
            return None
        return cls.load(Path(config.tls_cert), Path(config.tls_key))

    @classmethod
    def load(cls, cert_file: Path, key_file: Path) -> ServerTls:
        """Reads and checks the chain and key (they must match); raises ConfigError."""
        try:
            chain, key = cert_file.read_bytes(), key_file.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read TLS file {exc.filename}: {exc.strerror}") from None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols(["http/1.1"])
        try:
            context.load_cert_chain(cert_file, key_file)
        except ssl.SSLError as exc:
            raise ConfigError(
                f"tls_cert {cert_file} / tls_key {key_file} are not a matching PEM "
                f"certificate chain and private key: {exc.reason or exc}"
            ) from None
        credentials = grpc.ssl_server_credentials([(key, chain)])
        return cls(grpc_credentials=credentials, ssl_context=context)


def is_loopback(host: str) -> bool:
    """Whether binding `host` only accepts connections from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost, or "" / 0.0.0.0 style wildcards


def exposure_warnings(config: ServerConfig) -> list[str]:
    """What to warn about at start: a listener reachable from other machines without
    authentication, or sending tokens without TLS."""
    if is_loopback(config.host):
        return []
    warnings = []
    if not config.auth_enabled:
        warnings.append(
            f"authentication is OFF and the server listens on {config.host!r}, which is "
            "not a loopback address: anyone who can reach it may read and write every "
            "collection. Set --auth-secret or --auth-public-key (see docs/security.md)."
        )
    if not config.tls_enabled:
        warnings.append(
            f"TLS is off on {config.host!r}: traffic"
            + (" and bearer tokens" if config.auth_enabled else "")
            + " cross the network in clear text. Set --tls-cert and --tls-key, or "
            "terminate TLS in a proxy in front of the server."
        )
    return warnings
