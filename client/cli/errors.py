"""Exit codes of the `syncwire` command, and failures turned into one readable line.

Scripts branch on the exit code: 0 success, 1 the server or the input refused the
operation, 2 a usage error (nothing was sent), 3 the server could not be reached or is
not serving (retrying later may help), 4 the server is up but its application's hook
failed or timed out (reason `hook_failed` / `hook_timeout`: the server's log says why),
130 interrupted.
"""

from __future__ import annotations

import enum
import re

import grpc
import grpc.aio

from client.errors import SyncError, trailer
from wire.status import REASON_CODE_METADATA_KEY


class ExitCode(enum.IntEnum):
    """Exit codes of `syncwire`: 0 ok, 1 refused or failed, 2 usage error (nothing sent),
    3 server unreachable or not serving, 4 an application hook failed (the server is up),
    130 interrupted.
    """

    OK = 0
    FAILURE = 1
    USAGE = 2
    UNAVAILABLE = 3
    HOOK_FAILED = 4
    INTERRUPTED = 130


class CliError(Exception):
    """A failure the command reports as one line on stderr, then exits with `exit_code`."""

    def __init__(self, message: str, exit_code: ExitCode = ExitCode.FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class UsageError(CliError):
    """Bad arguments or input, found before anything was sent."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ExitCode.USAGE)


_UNREACHABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
# Reason codes of an UNAVAILABLE the server itself answered (its details are its words,
# such as "publish hook timed out", never a failure to reach it).
HOOK_FAILURES = frozenset({"hook_failed", "hook_timeout"})
"""Reason codes of a request refused because the application's hook failed."""
_SERVER_ANSWERS = HOOK_FAILURES | {"broker_unavailable"}
_TOKEN_OPTION = "with --token or SYNCWIRE_TOKEN"
# What a plain-text client reads when something else listens on that port (the other
# transport's port, or the server speaks TLS): grpc core sees the socket closed,
# websockets no HTTP response.
_NOT_PLAIN = re.compile(r"socket closed|did not receive a valid HTTP response", re.I)


def _not_plain_hint(where: str) -> str:
    """What to check when `where` (a grpc:// or ws:// URL) is no plain-text server."""
    if where.startswith("grpc://"):
        return " (no plain gRPC server there: check the port, or use grpcs:// or --tls)"
    return " (no plain WebSocket server there: check the port, or use wss:// or --tls)"


def _auth_hint(code: grpc.StatusCode, details: str, token_option: str) -> str:
    """What to do about an authentication or permission refusal (empty: nothing to add);
    `token_option` names where the token came from ("with --token or SYNCWIRE_TOKEN")."""
    if code == grpc.StatusCode.UNAUTHENTICATED:
        if "server API is off" in details:
            return ""  # the server's setting, not the token given
        if "missing token" in details:
            return f" (give a token {token_option})"
        if "expired" in details:
            return f" (give a fresh token {token_option})"
        return f" (check the token given {token_option})"
    # PERMISSION_DENIED needs no hint: the token's own refusal says "the token does not
    # allow ..."; the others (an application hook, the server API) are not the token's.
    return ""


# Transport failure details (grpc core and the WebSocket channel word them differently),
# in the order they are checked, with the short reason shown to the user.
_REASONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"connection refused|errno 111\b|connect call failed", re.I), "connection refused"),
    (
        re.compile(
            r"domain name not found|name or service not known|errors resolving|"
            r"nodename nor servname|errno -[23]\b",
            re.I,
        ),
        "unknown host",
    ),
    # Before TLS: websockets says "timed out during opening handshake".
    (re.compile(r"timed? ?out|deadline", re.I), "timed out"),
    (re.compile(r"certificate|ssl|tls|handshake", re.I), "TLS handshake failed"),
    (re.compile(r"failed to connect|connection reset|network is unreachable", re.I), ""),
)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _connect_reason(details: str) -> str | None:
    """A short reason when `details` describe a failure to reach the server."""
    if details.rstrip(": ") == "failed to connect":  # an exception without a message
        return "the connection closed during the handshake"
    for pattern, reason in _REASONS:
        if pattern.search(details):
            return reason or _one_line(details)
    return None


_UNTRUSTED = re.compile(
    r"CERTIFICATE_VERIFY_FAILED\]?:?\s*(?:certificate verify failed:\s*)?(?P<why>[^():]*)"
)


def _tls_reason(details: str) -> str:
    """The gist of a TLS failure (grpc core and Python's ssl word them differently)."""
    untrusted = _UNTRUSTED.search(details)
    if untrusted:
        why = untrusted["why"].strip() or "certificate verify failed"
        return f"TLS handshake failed: certificate not trusted ({why}); give its CA with --ca FILE"
    if "WRONG_VERSION_NUMBER" in details:
        return "TLS handshake failed: the server does not speak TLS on this port"
    return f"TLS handshake failed ({details})"


def explain(
    code: grpc.StatusCode,
    details: str,
    *,
    where: str,
    what: str,
    token_option: str = _TOKEN_OPTION,
    reason_code: str = "",
) -> CliError:
    """The one-line error for a failed call `what` to the server at `where`; an
    authentication refusal's hint names `token_option` as the token's source;
    `reason_code` is the server's (or the client's) reason, when known."""
    details = _one_line(details) or code.name
    if reason_code in HOOK_FAILURES:  # UNAVAILABLE under the closed failure policy
        return CliError(
            f"{where} refused the {what}: the application's hook failed: {details} "
            f"({reason_code}; the server's log says why)",
            ExitCode.HOOK_FAILED,
        )
    if code in _UNREACHABLE_CODES:
        reason = None if reason_code in _SERVER_ANSWERS else _connect_reason(details)
        if reason is not None:
            if reason == "TLS handshake failed":
                reason = _tls_reason(details)
            elif where.startswith(("grpc://", "ws://")) and _NOT_PLAIN.search(details):
                reason += _not_plain_hint(where)
            return CliError(f"cannot connect to {where}: {reason}", ExitCode.UNAVAILABLE)
        return CliError(f"{where} is unavailable: {details}", ExitCode.UNAVAILABLE)
    hint = _auth_hint(code, details, token_option)
    return CliError(f"{where} refused the {what}: {code.name.lower()}: {details}{hint}")


def from_sync_error(error: SyncError, *, where: str, what: str) -> CliError:
    # The client prefixes transport failures with "connecting to URL failed: ".
    """The one-line CliError for a client error while doing `what` against `where`
    (an endpoint URL), with the exit code its status code calls for.
    """
    details = re.sub(r"^connecting to \S+ failed: ", "", error.message)
    return explain(error.code, details, where=where, what=what, reason_code=error.reason_code)


def from_rpc_error(
    error: grpc.aio.AioRpcError, *, where: str, what: str, token_option: str = _TOKEN_OPTION
) -> CliError:
    """The one-line CliError for a failed unary call doing `what` against `where`."""
    reason_code = trailer(error, REASON_CODE_METADATA_KEY)
    return explain(
        error.code(),
        error.details() or "",
        where=where,
        what=what,
        token_option=token_option,
        reason_code=reason_code,
    )
