"""Scenario 5, redis: fan-out across nodes. Two syncwire servers share one private
redis-server; "one-node" puts the publisher and every subscriber on node A,
"two-nodes" splits the subscribers over A and B (worker by worker) with the publisher
on A, so half the deliveries cross Redis. Native gRPC clients. In-order delivery and
no loss are checked per subscriber."""

from __future__ import annotations

from bench.clients import SYNCWIRE_GRPC
from bench.results import ScenarioResult, SubjectRun
from bench.scenarios.base import BenchContext, Scenario, Servers, alternate, collection_name
from bench.scenarios.fanout_round import FANOUT_COLUMNS, FanoutTarget, fanout_round
from bench.servers.launch import start_redis, start_syncwire

ONE, TWO = "one-node", "two-nodes"


class RedisScenario(Scenario):
    name = "redis"
    title = "fan-out over Redis: subscribers on two nodes vs one"
    columns = FANOUT_COLUMNS

    async def run(self, ctx: BenchContext) -> ScenarioResult:
        result = self.result()
        options = ctx.options
        servers = Servers()
        try:
            await servers.start({"redis": start_redis()})
            if "redis" in servers.failed:
                result.skipped = f"no redis-server: {servers.failed['redis']}"
                return result
            url = servers.endpoint("redis", "url")
            args = ("--broker", url)
            await servers.start(
                {
                    "node-a": start_syncwire("node-a", *args),
                    "node-b": start_syncwire("node-b", *args),
                }
            )
            if servers.failed:
                name, reason = next(iter(servers.failed.items()))
                result.skipped = f"syncwire with the Redis broker did not start ({name}): {reason}"
                return result
            a, b = (servers.endpoint(n, "grpc") for n in ("node-a", "node-b"))
            pids = tuple(servers.started[n].pid for n in ("redis", "node-a", "node-b"))
            targets = {
                ONE: FanoutTarget(SYNCWIRE_GRPC, a, (a,), pids),
                TWO: FanoutTarget(SYNCWIRE_GRPC, a, (a, b), pids),
            }
            result.notes.append(
                f"N={options.subscribers} subscribers, syncwire-grpc clients, max-rate "
                f"publisher ({options.window} in flight); server CPU = both nodes + redis"
            )
            result.runs = [ctx.new_run(ONE, role="baseline"), ctx.new_run(TWO)]

            async def do_round(run: SubjectRun, index: int) -> dict[str, float]:
                collection = collection_name("redis", run.subject, index)
                return await fanout_round(ctx, targets[run.subject], collection, 0.0)

            await alternate(ctx, self.name, result.runs, options.rounds, do_round)
        finally:
            await servers.stop_all()
        return result
