"""Test material for the security tests: JWTs, key pairs and a private CA made on the fly.

Nothing here is a fixture file: every key and certificate is generated in the test run
(cryptography), so no secret ever lands in the repository.
"""

from __future__ import annotations

import datetime
import ipaddress
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

SECRET = "test-secret-that-is-long-enough-for-hs256"
OTHER_SECRET = "another-secret-that-is-long-enough-too!!"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def make_token(
    key: str | PrivateKey = SECRET,
    *,
    algorithm: str = "HS256",
    subs: list[str] | None = None,
    pubs: list[str] | None = None,
    expires_in: float = 300.0,
    **claims: Any,
) -> str:
    """A signed JWT for `sub` "tester" granting `subs` / `pubs` (default: everything)."""
    payload: dict[str, Any] = {
        "sub": "tester",
        "exp": time.time() + expires_in,
        "sub_collections": ["*"] if subs is None else subs,
        "pub_collections": ["*"] if pubs is None else pubs,
        **claims,
    }
    return jwt.encode(payload, key, algorithm=algorithm)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying `token`."""
    return (("authorization", f"Bearer {token}"),)


def trailer(error: grpc.aio.AioRpcError, key: str) -> str | None:
    """A trailing metadata value of a failed call (None when absent)."""
    # grpc.aio returns a grpc.aio.Metadata (pairs); grpc-stubs types it as _Metadatum.
    trailers: Any = error.trailing_metadata()
    for name, value in trailers or ():
        if name == key:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


def write_public_key(key: PrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@dataclass(frozen=True)
class Pki:
    """A private CA and a server certificate for 127.0.0.1 / ::1 / localhost, as files."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    @property
    def ca_pem(self) -> bytes:
        return self.ca_file.read_bytes()


def make_pki(directory: Path) -> Pki:
    """Writes ca.pem, server.pem (leaf + CA chain) and server.key into `directory`."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec_key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "syncwire test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec_key()
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    pki = Pki(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    pki.ca_file.write_bytes(ca_cert.public_bytes(pem))
    pki.cert_file.write_bytes(server_cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    pki.key_file.write_bytes(
        server_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return pki
