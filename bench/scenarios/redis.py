"""Scenario 5, redis: fan-out across nodes. Two syncwire servers share one private
redis-server; "one-node" puts the publisher and every subscriber on node A,
"two-nodes" splits the subscribers over A and B (worker by worker) with the publisher
on A, so half the deliveries cross Redis. "cluster" is "two-nodes" over a Redis Cluster
of three masters (each round's collection lands on the master its hash tag picks, so
rounds spread over the masters). "workers-2" is one `--workers 2` server over the single
Redis, every client on its shared port (the kernel spreads them over the workers).
Server CPU counts every syncwire process and every redis-server of the subject.
Native gRPC clients. In-order delivery and no loss are checked per subscriber."""

from __future__ import annotations

from bench.clients import SYNCWIRE_GRPC, SYNCWIRE_WS
from bench.procs import ProcessFailed, children
from bench.results import ScenarioResult, SubjectRun
from bench.scenarios.base import BenchContext, Scenario, Servers, alternate, collection_name
from bench.scenarios.fanout_round import FANOUT_COLUMNS, FanoutTarget, fanout_round
from bench.servers.launch import form_cluster, start_redis, start_syncwire

ONE, TWO, CLUSTER, WORKERS = "one-node", "two-nodes", "cluster", "workers-2"
# Typed WebSocket clients on one node over Redis, against a node on the memory broker.
ONE_WS, MEMORY_WS = "one-node-ws", "memory-ws"
CLUSTER_MASTERS = 3


class RedisScenario(Scenario):
    name = "redis"
    title = "fan-out over Redis: two nodes vs one, Redis Cluster, --workers 2"
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
                f"publisher ({options.window} in flight); server CPU = the subject's "
                "syncwire processes + redis-server(s)"
            )
            result.runs = [ctx.new_run(ONE, role="baseline"), ctx.new_run(TWO)]
            await servers.start({"memory": start_syncwire("memory")})
            if "memory" in servers.failed:
                result.notes.append(f"{MEMORY_WS} skipped: {servers.failed['memory']}")
            else:
                ws_a, ws_memory = (servers.endpoint(n, "ws") for n in ("node-a", "memory"))
                targets[ONE_WS] = FanoutTarget(
                    SYNCWIRE_WS, ws_a, (ws_a,), (servers.started["redis"].pid, pids[1])
                )
                targets[MEMORY_WS] = FanoutTarget(
                    SYNCWIRE_WS, ws_memory, (ws_memory,), (servers.started["memory"].pid,)
                )
                result.runs += [ctx.new_run(MEMORY_WS, role="baseline"), ctx.new_run(ONE_WS)]
                result.notes.append(
                    f"{ONE_WS}: typed WebSocket clients, every one on node A over Redis (server "
                    f"CPU = node A + redis-server); {MEMORY_WS}: the same on a node with the "
                    "memory broker"
                )
            for subject, reason in (
                (CLUSTER, await _start_cluster(servers, targets)),
                (WORKERS, await _start_workers(servers, targets, url)),
            ):
                if reason:
                    result.notes.append(f"{subject} skipped: {reason}")
                else:
                    result.runs.append(ctx.new_run(subject))

            async def do_round(run: SubjectRun, index: int) -> dict[str, float]:
                collection = collection_name("redis", run.subject, index)
                return await fanout_round(ctx, targets[run.subject], collection, 0.0)

            await alternate(ctx, self.name, result.runs, options.rounds, do_round)
        finally:
            await servers.stop_all()
        return result


async def _start_cluster(servers: Servers, targets: dict[str, FanoutTarget]) -> str:
    """Starts a three-master Redis Cluster and two nodes on it; "" or why not."""
    names = [f"redis-c{i}" for i in range(CLUSTER_MASTERS)]
    await servers.start({name: start_redis(name, cluster=True) for name in names})
    if failed := _failure(servers, names):
        return f"cluster redis-server did not start: {failed}"
    try:
        url = await form_cluster([int(servers.endpoint(n, "port")) for n in names])
    except (TimeoutError, OSError, ProcessFailed) as exc:
        return f"the cluster did not form: {exc}"
    nodes = ["cluster-a", "cluster-b"]
    await servers.start({name: start_syncwire(name, "--broker", url) for name in nodes})
    if failed := _failure(servers, nodes):
        return f"syncwire on the cluster did not start: {failed}"
    a, b = (servers.endpoint(n, "grpc") for n in ("cluster-a", "cluster-b"))
    pids = tuple(servers.started[n].pid for n in (*names, "cluster-a", "cluster-b"))
    targets[CLUSTER] = FanoutTarget(SYNCWIRE_GRPC, a, (a, b), pids)
    return ""


async def _start_workers(servers: Servers, targets: dict[str, FanoutTarget], url: str) -> str:
    """Starts one `--workers 2` server on the single Redis; "" or why not."""
    await servers.start({"workers": start_syncwire("workers", "--broker", url, "--workers", "2")})
    if failed := _failure(servers, ["workers"]):
        return f"--workers 2 did not start: {failed}"
    supervisor = servers.started["workers"].pid
    workers = tuple(children(supervisor))
    if len(workers) != 2:
        return f"--workers 2 runs {len(workers)} workers"
    shared = servers.endpoint("workers", "grpc")
    pids = (servers.started["redis"].pid, supervisor, *workers)
    targets[WORKERS] = FanoutTarget(SYNCWIRE_GRPC, shared, (shared,), pids)
    return ""


def _failure(servers: Servers, names: list[str]) -> str:
    """Why the first of `names` that failed to start did not, or ""."""
    return next((servers.failed[name] for name in names if name in servers.failed), "")
