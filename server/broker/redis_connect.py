"""Where the broker's Redis is and how to reach it: one server, a Sentinel-managed
master, or a Redis Cluster (redis-py's own Sentinel and Cluster support).

Broker URLs (every form takes `?key_prefix=NAME`, default "syncwire"):

- `redis://[[USER]:PASSWORD@]HOST:PORT[/DB]` (`rediss://` for TLS): one Redis server.
- `redis+sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER[/DB]`
  (`rediss+sentinel://` for TLS to the data nodes): the sentinels to ask and the name
  of the master they manage. Every new connection asks them for the current master, so
  after a failover each node follows the promoted replica by itself. The credentials
  are the data nodes'; `?sentinel_password=` gives the sentinels' own, if any.
- `redis+cluster://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]` (`rediss+cluster://`):
  seed nodes of a Redis Cluster; the topology is discovered and followed (MOVED/ASK).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from redis.asyncio import BlockingConnectionPool, ConnectionPool
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from .redis_keys import DEFAULT_PREFIX

Mode = Literal["single", "sentinel", "cluster"]

SCHEMES: dict[str, tuple[Mode, bool]] = {
    "redis": ("single", False),
    "rediss": ("single", True),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
}
"""URL scheme -> (topology, TLS)."""

URL_FORMS = (
    "redis://HOST:PORT/DB, redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER[/DB] or "
    "redis+cluster://HOST:PORT[,HOST:PORT...]"
)


class BlockingSentinelConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
    """A Sentinel-managed pool that waits (up to its timeout) for a free connection
    instead of failing when all are in use, like the single-server command pool."""


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """A parsed broker URL: the topology and what is needed to connect to it."""

    mode: Mode
    url: str
    """The URL without `key_prefix` (for `mode == "single"`, what redis-py is given)."""
    key_prefix: str = DEFAULT_PREFIX
    addresses: tuple[tuple[str, int], ...] = ()
    """Sentinels (sentinel) or seed nodes (cluster)."""
    master: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None
    tls: bool = False
    options: dict[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def parse(cls, url: str) -> RedisTarget:
        """Raises ValueError naming what is wrong with the URL."""
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES:
            raise ValueError(f"unknown scheme {parts.scheme!r}: use {URL_FORMS}")
        mode, tls = SCHEMES[parts.scheme]
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        prefix = query.pop("key_prefix", "") or DEFAULT_PREFIX
        if "{" in prefix or "}" in prefix:
            raise ValueError(f"key_prefix {prefix!r} may not contain '{{' or '}}'")
        sentinel_password = query.pop("sentinel_password", None) if mode == "sentinel" else None
        plain = urlunsplit(parts._replace(query=urlencode(query)))
        if mode == "single":
            database = parts.path.strip("/")
            if database and not database.isdigit():  # redis-py would read "/0/1" as db 1
                raise ValueError(f"database {database!r} is not a number")
            _check_single_url(plain)
            return cls(mode, plain, prefix, tls=tls)
        if query:  # redis-py's own URL options apply to redis:// URLs only
            raise ValueError(f"unknown URL parameter {sorted(query)[0]!r} (known: key_prefix"
                             + (", sentinel_password)" if mode == "sentinel" else ")"))
        hosts = parts.netloc.rpartition("@")[2]
        addresses = tuple(_address(item) for item in hosts.split(","))
        path = [segment for segment in parts.path.split("/") if segment]
        master, db = "", 0
        if mode == "sentinel":
            if not path or len(path) > 2:
                raise ValueError("a sentinel URL names the master: .../MASTER[/DB]")
            master = unquote(path[0])
            if len(path) == 2:
                if not path[1].isdigit():
                    raise ValueError(f"database {path[1]!r} is not a number")
                db = int(path[1])
        elif path:
            raise ValueError("a cluster URL has no path (Redis Cluster has database 0 only)")
        return cls(
            mode,
            plain,
            prefix,
            addresses=addresses,
            master=master,
            db=db,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            sentinel_password=sentinel_password,
            tls=tls,
            options=query,
        )

    def _credentials(self) -> dict[str, Any]:
        return {"username": self.username, "password": self.password}

    def pool(self, *, max_connections: int, blocking: bool, **options: Any) -> ConnectionPool:
        """A connection pool to the (current) master. `blocking`: wait up to
        `options["timeout"]` for a free connection rather than fail."""
        if self.mode == "single":
            if blocking:
                return BlockingConnectionPool.from_url(
                    self.url, max_connections=max_connections, **options
                )
            options.pop("timeout", None)
            return ConnectionPool.from_url(self.url, max_connections=max_connections, **options)
        if self.mode != "sentinel":
            raise ValueError("a Redis Cluster is reached through a cluster client, not a pool")
        sentinel_options = {
            key: options[key]
            for key in ("socket_connect_timeout", "socket_timeout", "retry")
            if key in options
        }
        manager = Sentinel(  # type: ignore[no-untyped-call]  # untyped upstream
            list(self.addresses),
            sentinel_kwargs={**sentinel_options, "password": self.sentinel_password},
        )
        if not blocking:
            options.pop("timeout", None)
        options.update(max_connections=max_connections, db=self.db, ssl=self.tls)
        options.update(self._credentials())
        if blocking:
            return BlockingSentinelConnectionPool(self.master, manager, **options)  # type: ignore[no-untyped-call]
        return SentinelConnectionPool(self.master, manager, **options)  # type: ignore[no-untyped-call]


    def cluster_client(self, *, max_connections: int, **options: Any) -> RedisCluster:
        """A Redis Cluster client (mode "cluster"): routes each command by slot, follows
        MOVED/ASK, and rediscovers the topology after a node fails. Slots that are not
        covered (during a failover) fail their own commands only."""
        options.pop("timeout", None)
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in self.addresses],
            require_full_coverage=False,
            max_connections=max_connections,
            ssl=self.tls,
            **self._credentials(),
            **options,
        )


def _check_single_url(url: str) -> None:
    """Raises ValueError when redis-py would refuse `url`'s options at every connect
    (a misspelt `key_prefix`, say): it builds, without connecting, the connection
    redis-py would open."""
    try:
        ConnectionPool.from_url(url).make_connection()  # type: ignore[no-untyped-call]
    except TypeError as exc:
        unknown = re.search(r"unexpected keyword argument '([^']*)'", str(exc))
        name = unknown[1] if unknown else str(exc)
        raise ValueError(
            f"unknown URL parameter {name!r} (key_prefix, or a redis-py option)"
        ) from None
    except ValueError as exc:
        raise ValueError(f"invalid URL option: {exc}") from None


def _address(text: str) -> tuple[str, int]:
    host, separator, port = text.strip().rpartition(":")
    if not separator or not port.isdigit() or not host:
        raise ValueError(f"address {text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)
