"""Security configuration and the pure pieces: flags and validation, token buckets,
permission patterns, token extraction, start-up warnings."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from server.__main__ import build_parser, main
from server.auth import Authenticator, Principal, bearer_token, handshake_token, redact_token
from server.config import ConfigError, ServerConfig, load_config
from server.errors import RequestError
from server.ratelimit import AddressCounter, RateLimiter, TokenBucket, peer_host
from server.tls import exposure_warnings, is_loopback

from .security_harness import SECRET, ec_key, make_token, write_public_key


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------------ configuration


def test_security_flags_and_environment(tmp_path: Path) -> None:
    key = write_public_key(ec_key(), tmp_path / "public.pem")
    (tmp_path / "cert.pem").write_text("cert")
    (tmp_path / "key.pem").write_text("key")
    args = build_parser().parse_args(
        [
            "--auth-public-key", str(key),
            "--auth-audience", "api",
            "--tls-cert", str(tmp_path / "cert.pem"),
            "--tls-key", str(tmp_path / "key.pem"),
            "--rate-limit-messages", "50",
            "--max-connections-per-address", "7",
        ]
    )  # fmt: skip
    config = load_config(args, {"SYNCWIRE_RATE_LIMIT_BYTES": "65536"})
    assert (config.auth_public_key, config.auth_audience) == (str(key), "api")
    assert config.auth_enabled and config.tls_enabled
    assert (config.rate_limit_messages, config.rate_limit_bytes) == (50.0, 65536.0)
    assert config.max_connections_per_address == 7
    from_env = load_config(build_parser().parse_args([]), {"SYNCWIRE_AUTH_SECRET": SECRET})
    assert from_env.auth_secret == SECRET and from_env.auth_enabled


def test_help_names_the_flags_as_the_issue_does() -> None:
    help_text = " ".join(build_parser().format_help().split())
    for usage in (
        "--auth-secret SECRET",
        "--auth-public-key FILE",
        "--tls-cert FILE",
        "--tls-key FILE",
        "env SYNCWIRE_AUTH_SECRET",
    ):
        assert usage in help_text


def test_defaults_are_open_for_loopback_development() -> None:
    config = ServerConfig()
    assert not config.auth_enabled and not config.tls_enabled
    assert (config.rate_limit_messages, config.rate_limit_bytes) == (0.0, 0.0)
    assert config.max_connections_per_address == 100


def test_the_secret_never_appears_in_repr_or_errors() -> None:
    assert SECRET not in repr(ServerConfig(auth_secret=SECRET))
    with pytest.raises(ConfigError) as short:
        ServerConfig(auth_secret="short-secret")
    assert "short-secret" not in str(short.value)
    assert "at least 32 bytes" in str(short.value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"auth_secret": SECRET, "auth_public_key": "k.pem"}, "not both"),
        ({"auth_public_key": "missing.pem"}, "invalid auth_public_key = 'missing.pem': no such"),
        ({"tls_cert": "missing.pem", "tls_key": "missing.key"}, "invalid tls_cert"),
        ({"auth_audience": "api"}, "needs authentication on"),
        ({"auth_issuer": "me"}, "needs authentication on"),
        ({"rate_limit_messages": -1.0}, "invalid rate_limit_messages = -1.0"),
        ({"rate_limit_burst": 0.0}, "invalid rate_limit_burst = 0.0"),
        ({"max_connections_per_address": -1}, "invalid max_connections_per_address"),
        ({"auth_leeway": -1.0}, "invalid auth_leeway"),
    ],
)
def test_bad_security_settings_are_named(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(ServerConfig(), **changes)


def test_tls_cert_and_key_come_together(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError, match="tls_cert and tls_key are set together"):
        ServerConfig(tls_cert=str(cert))


def test_unusable_key_file_exits_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "key.pem"
    key.write_text("not a key")
    assert main(["--auth-public-key", str(key), "--grpc-port", "0", "--ws-port", "0"]) == 2
    assert "is not a PEM public key" in capsys.readouterr().err


def test_exposure_warnings() -> None:
    assert exposure_warnings(ServerConfig()) == []
    assert exposure_warnings(ServerConfig(host="::1")) == []
    assert exposure_warnings(ServerConfig(host="localhost")) == []
    open_wide = exposure_warnings(ServerConfig(host="0.0.0.0"))
    assert len(open_wide) == 2
    assert "authentication is OFF" in open_wide[0]
    assert "TLS is off" in open_wide[1]
    with_auth = exposure_warnings(ServerConfig(host="10.1.2.3", auth_secret=SECRET))
    assert len(with_auth) == 1 and "bearer tokens" in with_auth[0]
    assert not is_loopback("") and not is_loopback("example.org") and is_loopback("127.0.0.2")


# ---------------------------------------------------------------------- tokens


def test_permission_patterns() -> None:
    principal = Principal("alice", ("doc:*", "room-?", "lit[1]"), ("doc:alice/*",), 0.0)
    assert principal.may("subscribe", "doc:1")
    assert principal.may("subscribe", "doc:a/b")
    assert principal.may("subscribe", "room-7")
    assert not principal.may("subscribe", "room-77")
    assert principal.may("subscribe", "lit[1]")  # literal names always match themselves
    assert not principal.may("subscribe", "Doc:1")  # case-sensitive
    assert not principal.may("subscribe", "default")
    assert principal.may("publish", "doc:alice/notes")
    assert not principal.may("publish", "doc:bob/notes")
    assert not Principal("nobody", (), (), 0.0).may("subscribe", "doc:1")


def test_token_extraction() -> None:
    assert bearer_token(None) is None
    assert bearer_token([("x-other", "1")]) is None
    assert bearer_token([("authorization", "Bearer abc")]) == "abc"
    assert bearer_token([("authorization", b"bearer  abc ")]) == "abc"
    assert handshake_token("/?token=q", {}) == "q"
    assert handshake_token("/?token=q", {"authorization": "Bearer h"}) == "h"
    assert handshake_token("/sync?room_id=r", {}) is None
    with pytest.raises(RequestError) as refused:
        bearer_token([("authorization", "Basic abc")])
    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert redact_token("/s?room_id=a&token=abc.def") == "/s?room_id=a&token=REDACTED"
    assert redact_token("/s?room_id=a") == "/s?room_id=a"


# ---------------------------------------------------------------- rate limits


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10.0, 0.0, 0.5, clock)  # 5 at once, then one per 100 ms
    for _ in range(5):
        limiter.charge("ipv4:1.2.3.4:5", 1)
    with pytest.raises(RequestError) as refused:
        limiter.charge("ipv4:1.2.3.4:5", 1)
    error = refused.value
    assert (error.code, error.reason_code, error.retry_after_ms) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "rate_limited",
        100,
    )
    limiter.charge("ipv4:1.2.3.4:6", 1)  # another connection has its own budget
    clock.now += 0.1
    limiter.charge("ipv4:1.2.3.4:5", 1)
    with pytest.raises(RequestError):
        limiter.charge("ipv4:1.2.3.4:5", 1)


def test_a_message_larger_than_the_byte_bucket_is_admitted_once_full() -> None:
    clock = FakeClock()
    limiter = RateLimiter(0.0, 1000.0, 1.0, clock)
    limiter.charge("c", 5000)  # from a full bucket: admitted, leaves 4000 bytes of debt
    with pytest.raises(RequestError) as refused:
        limiter.charge("c", 10)
    assert refused.value.retry_after_ms == 4010
    clock.now += 5.0
    limiter.charge("c", 5000)


def test_full_budgets_are_forgotten() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1.0, 0.0, 1.0, clock)
    for index in range(1024):
        limiter.charge(f"peer-{index}", 1)
    assert len(limiter) == 1024
    clock.now += 1.0  # every budget has refilled
    limiter.charge("one-more", 1)
    assert len(limiter) == 1


def test_bucket_refill_is_capped() -> None:
    bucket = TokenBucket(rate=2.0, capacity=4.0, tokens=0.0, stamp=0.0)
    bucket.refill(100.0)
    assert bucket.tokens == 4.0 and bucket.wait_for(4.0) == 0.0
    assert bucket.wait_for(5.0) == 0.0  # above capacity: a full bucket admits it


def test_peer_addresses_and_counts() -> None:
    assert peer_host("ipv4:10.0.0.1:5000") == "10.0.0.1"
    assert peer_host("ipv6:[::1]:5000") == "::1"
    assert peer_host("ipv6:%5B::1%5D:5000") == "::1"
    assert peer_host("inprocess") is None
    assert peer_host("unix:/tmp/socket") is None
    counter = AddressCounter(2)
    for _ in range(2):
        counter.add("a")
    assert counter.full("a") and not counter.full("b") and not counter.full(None)
    counter.remove("a")
    assert not counter.full("a")
    counter.remove("a")
    assert counter.count("a") == 0
    assert not AddressCounter(0).full("a")


def test_a_remembered_token_still_expires() -> None:
    clock = FakeClock()
    clock.now = time.time()
    authenticator = Authenticator(SECRET.encode(), ["HS256"], leeway=0.0, clock=clock)
    jwt = make_token(expires_in=60)
    assert authenticator.authenticate(jwt).subject == "tester"
    clock.now += 120
    with pytest.raises(RequestError) as expired:
        authenticator.authenticate(jwt)  # from the cache: no signature check, still expired
    assert (expired.value.reason_code, expired.value.message) == ("token_expired", "token expired")
