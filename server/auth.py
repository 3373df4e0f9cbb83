"""JWT authentication and per-collection permissions.

Authentication is on when the server has an HS256 secret or an RS256/ES256 public key.
Every call then carries a token: `authorization: Bearer <jwt>` in gRPC metadata or in
the WebSocket framing's call metadata (the handshake's `Authorization` header stands in
when a call has none), and for legacy JSON clients the handshake's `Authorization`
header or a `?token=<jwt>` query parameter. A valid token becomes a `Principal` whose
`sub_collections` / `pub_collections` claims say which collections it may subscribe to
and publish into. Failures are `RequestError`s with UNAUTHENTICATED (bad token) or
PERMISSION_DENIED (collection not granted). See docs/security.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import parse_qs, urlsplit, urlunsplit

import grpc
import jwt
from cachetools import LRUCache
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from .config import ConfigError, ServerConfig
from .errors import RequestError

Action = Literal["subscribe", "publish"]

SUBSCRIBE_CLAIM: Final = "sub_collections"
PUBLISH_CLAIM: Final = "pub_collections"
TOKEN_QUERY_PARAMETER: Final = "token"

# Reason codes of authentication failures (Error.reason_code, legacy `error` code,
# `syncwire-reason` trailer). Wrong audience or issuer, bad signature and malformed
# tokens are all "invalid_token"; the message says which.
MISSING_TOKEN: Final = "missing_token"
INVALID_TOKEN: Final = "invalid_token"
TOKEN_EXPIRED: Final = "token_expired"
FORBIDDEN: Final = "forbidden"

_EC_ALGORITHMS: Final = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a valid token speaks for and what it may do.

    `subscribe` and `publish` hold collection names or fnmatch-style patterns (`doc:*`,
    `room-?`); `expires_at` is the token's `exp` (POSIX seconds).
    """

    subject: str
    subscribe: tuple[str, ...]
    publish: tuple[str, ...]
    expires_at: float
    claims: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """Every claim of the verified token (what hooks see as `Caller.claims`)."""

    def may(self, action: Action, collection_id: str) -> bool:
        """Whether the token grants `action` on `collection_id`. A pattern matches the
        name literally too, so names containing `[` or `*` can still be granted."""
        patterns = self.subscribe if action == "subscribe" else self.publish
        return any(p == collection_id or fnmatchcase(collection_id, p) for p in patterns)


def unauthenticated(reason_code: str, message: str) -> RequestError:
    """A RequestError(UNAUTHENTICATED) with `reason_code` (missing_token, invalid_token,
    token_expired) and `message`.
    """
    return RequestError(grpc.StatusCode.UNAUTHENTICATED, reason_code, message)


def forbidden(action: Action, collection_id: str) -> RequestError:
    """A RequestError(PERMISSION_DENIED, "forbidden") for `action` ("subscribe" or
    "publish") on `collection_id`, which it names.
    """
    return RequestError(
        grpc.StatusCode.PERMISSION_DENIED,
        FORBIDDEN,
        f"the token does not allow {action} on {collection_id!r}",
        collection_id=collection_id,
    )


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The JWT of the first `authorization` entry (`Bearer <jwt>`), or None without one.
    Raises UNAUTHENTICATED for another scheme."""
    for key, value in metadata or ():
        if key.lower() == "authorization":
            text = value.decode("latin-1") if isinstance(value, bytes) else value
            return _parse_bearer(text)
    return None


def handshake_token(path: str, headers: Mapping[str, str]) -> str | None:
    """A legacy connection's JWT: the `Authorization: Bearer` header (lower-case header
    names), else the `token` query parameter of the request path."""
    header = headers.get("authorization")
    if header is not None:
        return _parse_bearer(header)
    values = parse_qs(urlsplit(path).query, keep_blank_values=True).get(TOKEN_QUERY_PARAMETER)
    if not values:
        return None
    if len(values) > 1:
        raise unauthenticated(INVALID_TOKEN, "invalid token: token is given more than once")
    return values[0] or None


def redact_token(path: str) -> str:
    """`path` with the value of its `token` query parameter hidden, for logs."""
    parts = urlsplit(path)
    if TOKEN_QUERY_PARAMETER not in parse_qs(parts.query, keep_blank_values=True):
        return path
    query = "&".join(
        f"{TOKEN_QUERY_PARAMETER}=REDACTED"
        if item.split("=", 1)[0] == TOKEN_QUERY_PARAMETER
        else item
        for item in parts.query.split("&")
    )
    return urlunsplit(parts._replace(query=query))


def _parse_bearer(header: str) -> str | None:
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise unauthenticated(INVALID_TOKEN, "invalid token: authorization must be 'Bearer <jwt>'")
    return token.strip() or None


class Authenticator:
    """Verifies JWTs with one key and turns them into Principals.

    Verified tokens are remembered (bounded LRU), so a client that sends its token with
    every unary call pays for one signature check; a remembered token is still refused
    once it expires.
    """

    def __init__(
        self,
        key: Any,
        algorithms: list[str],
        *,
        audience: str = "",
        issuer: str = "",
        leeway: float = 5.0,
        cache_size: int = 4096,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = key
        self._algorithms = algorithms
        self._audience = audience or None
        self._issuer = issuer or None
        self.leeway = leeway
        # token -> verified principal; least recently used dropped beyond cache_size.
        self._cache: LRUCache[str, Principal] = LRUCache(maxsize=cache_size)
        self.clock = clock
        """POSIX seconds now; every time claim (exp, nbf, iat) and a session's token
        expiry are judged by it (replaceable in tests)."""

    @classmethod
    def from_config(cls, config: ServerConfig) -> Authenticator | None:
        """The configured authenticator, or None while authentication is off. Raises
        ConfigError for an unreadable or unsupported public key."""
        options: dict[str, Any] = {
            "audience": config.auth_audience,
            "issuer": config.auth_issuer,
            "leeway": config.auth_leeway,
        }
        if config.auth_secret:
            return cls(config.auth_secret.encode("utf-8"), ["HS256"], **options)
        if config.auth_public_key:
            key, algorithm = load_public_key(Path(config.auth_public_key))
            return cls(key, [algorithm], **options)
        return None

    def authenticate(self, token: str | None) -> Principal:
        """The Principal of a valid token; raises UNAUTHENTICATED otherwise."""
        if token is None:
            raise unauthenticated(MISSING_TOKEN, "missing token")
        principal = self._cache.get(token)
        if principal is None:
            principal = self._verify(token)
            self._cache[token] = principal
        if self.clock() > self.deadline(principal):
            del self._cache[token]
            raise unauthenticated(TOKEN_EXPIRED, "token expired")
        return principal

    def deadline(self, principal: Principal) -> float:
        """When (POSIX seconds) the principal's token stops being accepted."""
        return principal.expires_at + self.leeway

    def _verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                # Time claims are judged below by `self.clock`, not by PyJWT's own clock.
                options={
                    "require": ["exp"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
            _check_time_claims(claims, self.clock(), self.leeway)
        except jwt.ExpiredSignatureError:
            raise unauthenticated(TOKEN_EXPIRED, "token expired") from None
        except jwt.InvalidAudienceError:
            raise unauthenticated(INVALID_TOKEN, "invalid token: wrong audience") from None
        except jwt.InvalidIssuerError:
            raise unauthenticated(INVALID_TOKEN, "invalid token: wrong issuer") from None
        except jwt.InvalidTokenError as exc:
            raise unauthenticated(INVALID_TOKEN, f"invalid token: {exc}") from None
        return Principal(
            subject=str(claims.get("sub", "")),
            subscribe=_patterns(claims, SUBSCRIBE_CLAIM),
            publish=_patterns(claims, PUBLISH_CLAIM),
            expires_at=float(claims["exp"]),
            claims=claims,
        )


_TIME_CLAIMS: Final = {"exp": "Expiration Time", "nbf": "Not Before", "iat": "Issued At"}


def _check_time_claims(claims: Mapping[str, Any], now: float, leeway: float) -> None:
    """PyJWT's checks of exp, nbf and iat (same errors and messages), at time `now`."""
    values: dict[str, float] = {}
    for name, title in _TIME_CLAIMS.items():
        if name in claims:
            try:
                values[name] = int(claims[name])
            except (ValueError, TypeError, OverflowError):
                raise jwt.DecodeError(f"{title} claim ({name}) must be an integer.") from None
    if values["exp"] <= now - leeway:
        raise jwt.ExpiredSignatureError("Signature has expired")
    for name in ("nbf", "iat"):
        if name in values and values[name] > now + leeway:
            raise jwt.ImmatureSignatureError(f"The token is not yet valid ({name})")


def _patterns(claims: Mapping[str, Any], name: str) -> tuple[str, ...]:
    """A permission claim: a list of names or patterns; absent means none."""
    value = claims.get(name, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise unauthenticated(INVALID_TOKEN, f"invalid token: {name} must be a list of strings")
    return tuple(value)


def load_public_key(path: Path) -> tuple[Any, str]:
    """The key in a PEM public key file and the JWT algorithm it verifies."""
    try:
        key = load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read auth_public_key {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"auth_public_key {path} is not a PEM public key: {exc}") from None
    if isinstance(key, rsa.RSAPublicKey):
        return key, "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in _EC_ALGORITHMS:
        return key, _EC_ALGORITHMS[key.curve.name]
    raise ConfigError(
        f"auth_public_key {path}: unsupported key type {type(key).__name__} "
        "(use an RSA key for RS256 or an EC P-256 key for ES256)"
    )
