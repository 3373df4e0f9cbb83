"""Application hooks for the web client's Node tests (`--hooks tests.web_hooks:HOOKS`):
a publish whose delta starts with b"refuse" is refused for good (PERMISSION_DENIED,
reason "refused_by_test"); everything else is accepted."""

from __future__ import annotations

from server.hooks import Caller, HookRefusal, Hooks
from syncwire.v1 import types_pb2


class RefusingHooks(Hooks):
    """Refuses the publishes the tests mark, accepts the rest."""

    async def on_publish(self, caller: Caller, delta: types_pb2.Delta) -> types_pb2.Delta | None:
        if delta.delta.startswith(b"refuse"):
            raise HookRefusal(
                "the test application refuses this delta", reason_code="refused_by_test"
            )
        return None


HOOKS = RefusingHooks()
