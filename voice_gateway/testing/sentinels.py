"""A Redis primary, its replica and three sentinels on free loopback ports, for failover tests.

Debian's plain `redis-server` is enough: `redis-server sentinel.conf --sentinel` is Sentinel (the
`redis-sentinel` package only adds a service unit). Everything lives in one folder (configurations, which the
sentinels rewrite, and logs) and nothing is persisted. `start()` returns once the replica is in sync and every
sentinel knows it and the two other sentinels, so a failover can happen; `stop()` stops what is still running.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import redis

from hotline_domain.redis_spec import DEFAULT_MASTER, Sentinels
from voice_gateway.stack import ManagedProcess, StartError, free_port, port_open

QUORUM = 2
_SWITCH_MASTER = re.compile(r"(\d+ \w+ \d+ [\d:.]+) # \+switch-master ")


@contextlib.contextmanager
def _client(port: int) -> Iterator[redis.Redis]:
    client = redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5, decode_responses=True)
    try:
        yield client
    finally:
        client.close()


@dataclass
class SentinelCluster:
    folder: Path
    master: str = DEFAULT_MASTER
    down_after_ms: int = 1000  # no answer for this long: the primary is (subjectively) down
    failover_timeout_ms: int = 3000  # a failover not done in this long is tried again (by another sentinel)
    primary_port: int = field(default_factory=free_port)
    replica_port: int = field(default_factory=free_port)
    sentinel_ports: tuple[int, ...] = field(default_factory=lambda: tuple(free_port() for _ in range(3)))
    processes: dict[str, ManagedProcess] = field(default_factory=dict)

    @property
    def sentinels(self) -> Sentinels:
        return Sentinels(tuple(("127.0.0.1", port) for port in self.sentinel_ports), self.master)

    @property
    def url(self) -> str:
        """The primary as it was started (the database and password a client through the sentinels uses)."""
        return f"redis://127.0.0.1:{self.primary_port}/0"

    def _redis(self, name: str, port: int, *extra: str) -> ManagedProcess:
        binary = shutil.which("redis-server")
        if binary is None:
            raise StartError("redis-server not found (Debian: apt-get install redis-server)")
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(self.folder), "--repl-diskless-sync-delay", "0", *extra]
        return ManagedProcess(name, args, lambda: port_open("127.0.0.1", port), self.folder / f"{name}.log", port=port)

    def _sentinel(self, n: int, port: int) -> ManagedProcess:
        conf = self.folder / f"sentinel-{n}.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {self.folder}\n"
            f"sentinel monitor {self.master} 127.0.0.1 {self.primary_port} {QUORUM}\n"
            f"sentinel down-after-milliseconds {self.master} {self.down_after_ms}\n"
            f"sentinel failover-timeout {self.master} {self.failover_timeout_ms}\n"
            f"sentinel parallel-syncs {self.master} 1\n"
        )
        process = self._redis(f"sentinel-{n}", port)
        process.args = [process.args[0], str(conf), "--sentinel"]
        return process

    def start(self, timeout_s: float = 30.0) -> None:
        """Primary, then its replica, then the sentinels (after the replica is in sync, so they see it at once)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            self._up(self._redis("primary", self.primary_port))
            self._up(self._redis("replica", self.replica_port, "--replicaof", "127.0.0.1", str(self.primary_port)))
            self._until(self._replica_in_sync, timeout_s)
            for n, port in enumerate(self.sentinel_ports, 1):
                self._up(self._sentinel(n, port))
            self._until(self._monitored, timeout_s)
        except BaseException:
            self.stop()
            raise

    def _up(self, process: ManagedProcess) -> None:
        process.start()
        self.processes[process.name] = process

    def _replica_in_sync(self) -> bool:
        with _client(self.primary_port) as client:
            replica = client.info("replication").get("slave0")
        return isinstance(replica, dict) and replica.get("state") == "online"

    def _monitored(self) -> bool:
        """Every sentinel knows the replica and the two other sentinels."""
        for port in self.sentinel_ports:
            with _client(port) as client:
                if not client.sentinel_slaves(self.master) or len(client.sentinel_sentinels(self.master)) != 2:
                    return False
        return True

    @staticmethod
    def _until(ready: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if ready():
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise StartError(f"the sentinels were not ready within {timeout_s:g} s")
            time.sleep(0.1)

    def kill_primary(self) -> float:
        """SIGKILL the primary (no goodbye to its clients or replica); returns when (monotonic)."""
        process = self.processes["primary"]
        assert process.proc is not None
        process.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        process.proc.wait(5)
        return killed

    def named_primary(self) -> int | None:
        """The port of the primary the sentinels name now (None: none answers, or they name none)."""
        for port in self.sentinel_ports:
            try:
                with _client(port) as client:
                    address = client.sentinel_get_master_addr_by_name(self.master)
            except redis.RedisError:
                continue
            if address:
                return int(address[1])
        return None

    def wait_promoted(self, timeout_s: float = 30.0) -> float:
        """Until a sentinel names the replica as the primary; returns when (monotonic)."""
        self._until(lambda: self.named_primary() == self.replica_port, timeout_s)
        return time.monotonic()

    def switched_at(self) -> float | None:
        """When a sentinel logged `+switch-master` (the failover done, the replica named), as time.time()."""
        times = []
        for n in range(1, len(self.sentinel_ports) + 1):
            log = self.folder / f"sentinel-{n}.log"
            for stamp in _SWITCH_MASTER.findall(log.read_text(errors="replace") if log.exists() else ""):
                times.append(datetime.strptime(stamp, "%d %b %Y %H:%M:%S.%f").timestamp())  # the log's local time
        return min(times, default=None)

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()
        self.processes.clear()
