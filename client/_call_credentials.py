"""Per-call credentials (`grpc.CallCredentials`) turned into call metadata, as grpc does.

grpc applies call credentials only on secure channels: on an insecure one, starting the
call raises `grpc.aio.UsageError("Call credentials are only valid on secure channels")`
(grpc.aio, cygrpc's `AioChannel.call`). On a secure one every metadata plugin of the
credentials (`access_token_call_credentials`, `metadata_call_credentials`, and the
parts of `composite_call_credentials`, in order) is asked with an `AuthMetadataContext`
(`service_url` = `https://<authority>/<package.Service>`, `method_name` = the method)
and its metadata is appended after the call's own. A plugin that reports an error or
raises fails the call with UNAVAILABLE, "Getting metadata from plugin failed with
error: <message>". Plugins run in a worker thread, as grpc runs them off the event
loop, so a plugin may block (for example to fetch a token).

grpcio has no public API to read a `CallCredentials` back; the plugin objects are
reached through the attributes grpcio's own `_plugin_wrapping` creates
(`_credentials._metadata_plugin`, `_credentials._call_credentialses`).
"""

from __future__ import annotations

import asyncio
from typing import Any, Final
from urllib.parse import urlsplit

import grpc

INSECURE_CHANNEL_MESSAGE: Final = "Call credentials are only valid on secure channels"
PLUGIN_FAILED_PREFIX: Final = "Getting metadata from plugin failed with error: "


class CredentialsFailed(Exception):
    """A metadata plugin reported an error; `str()` is grpc's status details."""


def check_secure(credentials: grpc.CallCredentials | None, secure: bool) -> None:
    """Raises grpc.aio.UsageError, as grpc.aio does, for call credentials on an
    insecure channel."""
    if credentials is not None and not secure:
        raise grpc.aio.UsageError(INSECURE_CHANNEL_MESSAGE)


async def credentials_metadata(
    credentials: grpc.CallCredentials, url: str, method: str
) -> list[tuple[str, str | bytes]]:
    """The metadata `credentials` add to a call of `method` (`/package.Service/Method`)
    on the channel to `url`. Raises CredentialsFailed."""
    service, _, name = method.rpartition("/")
    service_url = f"https://{urlsplit(url).netloc}{service}"
    pairs: list[tuple[str, str | bytes]] = []
    native: Any = getattr(credentials, "_credentials", None)  # see the module doc
    for plugin in _plugins(native):
        pairs.extend(await _ask(plugin, service_url, name))
    return pairs


def _plugins(native: Any) -> list[Any]:
    """grpcio's `_plugin_wrapping._Plugin` objects inside a cygrpc call credentials."""
    parts = getattr(native, "_call_credentialses", None)
    if parts is not None:
        return [plugin for part in parts for plugin in _plugins(part)]
    plugin = getattr(native, "_metadata_plugin", None)
    if plugin is None:
        raise CredentialsFailed(f"unsupported call credentials {type(native).__name__}")
    return [plugin]


async def _ask(plugin: Any, service_url: str, method_name: str) -> list[tuple[str, str | bytes]]:
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[list[tuple[str, str | bytes]]] = loop.create_future()

    def settle(metadata: Any, status: Any, error: bytes | str | None) -> None:
        if answer.done():
            return
        if error is None and metadata is not None:
            answer.set_result([(str(key), value) for key, value in metadata])
        elif error is None:
            answer.set_result([])
        else:
            text = error.decode("utf-8", "replace") if isinstance(error, bytes) else error
            answer.set_exception(CredentialsFailed(PLUGIN_FAILED_PREFIX + text))

    def callback(metadata: Any, status: Any, error: bytes | str | None) -> None:
        loop.call_soon_threadsafe(settle, metadata, status, error)

    # grpcio's _Plugin builds the AuthMetadataContext, calls the application's plugin
    # and turns a raised exception into an error callback.
    await asyncio.to_thread(plugin, service_url.encode(), method_name.encode(), callback)
    return await answer
