"""Real Redis topologies for the scale-out tests, started and stopped by pid:
a Sentinel trio over a master and a replica, and a Redis Cluster of three masters with
one replica each (created with `redis-cli --cluster create`-equivalent commands)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from .redis_harness import RedisServer, free_port

MASTER_NAME = "syncwire"
DOWN_AFTER_MS = 1000
"""Sentinels call a silent master down after this long, then fail over."""


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Polls a condition of another process (which sends no event) until it holds."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.RedisError, OSError):
            if condition():
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout} s")
        time.sleep(0.05)


def client(port: int) -> redis.Redis:
    return redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=2)


@contextlib.contextmanager
def started(servers: list[RedisServer]) -> Iterator[None]:
    """Starts the servers in order; kills every one of them (by pid) at the end."""
    try:
        for server in servers:
            server.start()
        yield
    finally:
        for server in servers:
            server.kill()


@dataclass
class SentinelSet:
    master: RedisServer
    replica: RedisServer
    sentinels: list[RedisServer]

    def url(self, prefix: str) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{MASTER_NAME}/0?key_prefix={prefix}"

    def master_port(self) -> int:
        """The master port the sentinels report now."""
        with client(self.sentinels[0].port) as sentinel:
            _, port = sentinel.sentinel_get_master_addr_by_name(MASTER_NAME)
        return int(port)


@contextlib.contextmanager
def sentinel_set(directory: Path) -> Iterator[SentinelSet]:
    """A master, its replica (in sync) and three sentinels (quorum 2) that know both and
    each other, so a failover can start as soon as the master goes silent."""
    master = RedisServer(_dir(directory, "master"))
    replica = RedisServer(
        _dir(directory, "replica"), options=["--replicaof", "127.0.0.1", str(master.port)]
    )
    sentinels = []
    for index in range(3):
        home = _dir(directory, f"sentinel{index}")
        config = home / "sentinel.conf"
        config.write_text(
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master.port} 2\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER_NAME} 10000\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )
        sentinels.append(RedisServer(home, options=["--sentinel"], config_file=config))
    topology = SentinelSet(master, replica, sentinels)
    with started([master, replica, *sentinels]):

        def replica_in_sync() -> bool:
            with client(replica.port) as r:
                return bool(r.info("replication").get("master_link_status") == "up")

        def sentinels_ready() -> bool:
            for sentinel in sentinels:
                with client(sentinel.port) as s:
                    state = s.sentinel_master(MASTER_NAME)
                if state["num-slaves"] < 1 or state["num-other-sentinels"] < 2:
                    return False
            return True

        wait_for(replica_in_sync, "the replica synchronised")
        wait_for(sentinels_ready, "the sentinels found the replica and each other")
        yield topology


def _dir(base: Path, name: str) -> Path:
    path = base / name
    path.mkdir(parents=True, exist_ok=True)
    return path


SLOTS = 16384


@dataclass
class ClusterSet:
    """Three masters with one replica each: `nodes[i + 3]` replicates `nodes[i]`."""

    nodes: list[RedisServer]

    def url(self, prefix: str) -> str:
        hosts = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:3])
        return f"redis+cluster://{hosts}?key_prefix={prefix}"

    def node_id(self, node: RedisServer) -> str:
        with client(node.port) as r:
            return str(r.execute_command("CLUSTER", "MYID").decode())

    def owner(self, slot: int) -> RedisServer:
        """The live master serving `slot` now (as the first live node sees it)."""
        for probe in self.nodes:
            if probe.process is None:
                continue
            with client(probe.port) as r:
                for start, end, master, *_ in r.execute_command("CLUSTER", "SLOTS"):
                    if start <= slot <= end:
                        port = int(master[1])
                        return next(n for n in self.nodes if n.port == port)
        raise AssertionError(f"no live node knows slot {slot}")

    def migrate_slot(self, slot: int, target: RedisServer) -> None:
        """Moves a slot and its keys to `target` the way redis-cli --cluster reshard does
        (IMPORTING/MIGRATING, MIGRATE in batches, then SETSLOT NODE everywhere)."""
        source = self.owner(slot)
        source_id, target_id = self.node_id(source), self.node_id(target)
        with client(source.port) as src, client(target.port) as dst:
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
            while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
                src.execute_command(
                    "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys
                )
            for node in self.nodes:  # masters only; replicas learn it from their masters
                if node.process is not None:
                    with client(node.port) as r:
                        if r.execute_command("ROLE")[0] == b"master":
                            r.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)


def cluster_node(directory: Path, bus_port: int) -> RedisServer:
    """A cluster-enabled redis-server with an explicit bus port (the default, client
    port + 10000, overflows for ephemeral ports)."""
    return RedisServer(
        directory,
        options=[
            "--cluster-enabled", "yes",
            "--cluster-port", str(bus_port),
            "--cluster-config-file", str(directory / "nodes.conf"),
            "--cluster-node-timeout", "1000",
            "--cluster-replica-validity-factor", "0",
        ],
    )


@contextlib.contextmanager
def cluster_set(directory: Path) -> Iterator[ClusterSet]:
    """Creates a cluster (what `redis-cli --cluster create --cluster-replicas 1` does):
    three masters share the slots, each gets a replica; waits until every node reports
    the cluster ok and every replica is in sync."""
    buses = [free_port() for _ in range(6)]
    nodes = [cluster_node(_dir(directory, f"node{i}"), buses[i]) for i in range(6)]
    topology = ClusterSet(nodes)
    with started(nodes):
        with client(nodes[0].port) as r:
            for node, bus in zip(nodes[1:], buses[1:], strict=True):
                r.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port, bus)
        share = SLOTS // 3
        for index, master in enumerate(nodes[:3]):
            end = SLOTS - 1 if index == 2 else (index + 1) * share - 1
            with client(master.port) as r:
                r.execute_command("CLUSTER", "ADDSLOTSRANGE", index * share, end)

        def everyone_knows_everyone() -> bool:
            for node in nodes:
                with client(node.port) as r:
                    if len(r.execute_command("CLUSTER", "NODES").decode().splitlines()) < 6:
                        return False
            return True

        wait_for(everyone_knows_everyone, "the nodes met")
        for master, replica in zip(nodes[:3], nodes[3:], strict=True):
            master_id = topology.node_id(master)
            with client(replica.port) as r:
                r.execute_command("CLUSTER", "REPLICATE", master_id)

        def ready() -> bool:
            for node in nodes:
                with client(node.port) as r:
                    if r.execute_command("CLUSTER", "INFO").decode().find("cluster_state:ok") < 0:
                        return False
            for replica in nodes[3:]:
                with client(replica.port) as r:
                    if r.info("replication").get("master_link_status") != "up":
                        return False
            return True

        wait_for(ready, "the cluster is ok and its replicas in sync", timeout=60)
        yield topology
