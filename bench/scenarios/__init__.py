"""The scenarios, in the order they run."""

from __future__ import annotations

from bench.scenarios.base import BenchContext, Scenario


def all_scenarios() -> dict[str, Scenario]:
    from bench.scenarios.catchup import CatchUpScenario
    from bench.scenarios.fanout import FanoutScenario
    from bench.scenarios.idle import IdleScenario
    from bench.scenarios.redis import RedisScenario
    from bench.scenarios.rpc import RpcScenario
    from bench.scenarios.translate import TranslateScenario
    from bench.scenarios.web import WebScenario

    scenarios: list[Scenario] = [
        FanoutScenario(),
        RpcScenario(),
        IdleScenario(),
        TranslateScenario(),
        CatchUpScenario(),
        RedisScenario(),
        WebScenario(),
    ]
    return {s.name: s for s in scenarios}


__all__ = ["BenchContext", "Scenario", "all_scenarios"]
