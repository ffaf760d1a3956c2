"""Real Redis topologies on loopback for tests: a 3-master cluster, and a master + replica watched by a sentinel.

    cluster = RedisCluster(workdir).start()     # .ports, .startup_nodes, .flushall(), .stop()
    sentinel = RedisSentinel(workdir).start()   # .sentinel_nodes, .service_name, .master_port(),
                                                # .stop_master(), .wait_for_failover(), .stop()
    server = FaultyRedis(workdir).start()       # one server to fail for real: .down(), .up() (same port,
                                                # same data: append-only file), .freeze(), .thaw(), .stop()

The shapes of `startup_nodes` and `sentinel_nodes` are those LiteLLM's `coordination_redis` settings take.
Each process logs to <workdir>/<name>.log; assertion messages name the log to read.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from .loopback import free_port

HOST = "127.0.0.1"
START_TIMEOUT = 20.0


def cli(port: int, *args: str) -> str:
    """redis-cli's answer (stdout, stripped), or "" when the server is not answering."""
    try:
        done = subprocess.run(["redis-cli", "-h", HOST, "-p", str(port), *args],
                              capture_output=True, text=True, timeout=5)
    except subprocess.TimeoutExpired:
        return ""
    return done.stdout.strip()


def info(port: int, section: str) -> dict[str, str]:
    """An INFO section as a dict ("master_link_status" -> "up")."""
    lines = cli(port, "info", section).splitlines()
    return dict(line.split(":", 1) for line in lines if ":" in line and not line.startswith("#"))


def wait_until(what: str, check: Callable[[], bool], timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting until {what}"
        time.sleep(0.05)


def free_ports(count: int) -> list[int]:
    """Distinct free ports: free_port() may hand out the same one twice."""
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


class _Processes:
    """Redis processes by port, each logging to the workdir; stop() ends those still running."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.by_port: dict[int, subprocess.Popen[bytes]] = {}

    def spawn(self, port: int, name: str, argv: list[str]) -> None:
        binary = shutil.which(argv[0])
        assert binary, f"{argv[0]} is missing: scripts/test installs it"
        with open(self.workdir / f"{name}.log", "wb") as log:
            self.by_port[port] = subprocess.Popen([binary, *argv[1:]], stdout=log, stderr=subprocess.STDOUT,
                                                  stdin=subprocess.DEVNULL)
        log = self.workdir / f"{name}.log"

        def answers() -> bool:
            # Fail at once, not after the timeout, when the process died (a taken port, a bad option).
            assert self.by_port[port].poll() is None, f"{name} exited at start: see {log}"
            return cli(port, "ping") == "PONG"

        wait_until(f"{name} answers PING on port {port} (see {log})", answers)

    def terminate(self, port: int) -> None:
        process = self.by_port.pop(port)
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop(self) -> None:
        for port in list(self.by_port):
            self.terminate(port)

    def server_argv(self, port: int, *extra: str) -> list[str]:
        # No persistence: each topology starts empty and leaves nothing behind but logs and configs.
        return ["redis-server", "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
                "--dir", str(self.workdir), *extra]


class RedisCluster:
    """N masters, no replicas, all 16384 slots assigned and agreed on by every node."""

    def __init__(self, workdir: Path, masters: int = 3) -> None:
        self._processes = _Processes(workdir)
        self.ports = free_ports(masters)

    @property
    def startup_nodes(self) -> list[dict[str, object]]:
        return [{"host": HOST, "port": port} for port in self.ports]

    def start(self) -> RedisCluster:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        workdir = self._processes.workdir
        for port in self.ports:
            # The bus port defaults to port + 10000, which may be taken or above 65535: pick a free one.
            self._processes.spawn(port, f"cluster-{port}", self._processes.server_argv(
                port, "--cluster-enabled", "yes", "--cluster-config-file", str(workdir / f"nodes-{port}.conf"),
                "--cluster-port", str(free_port())))
        nodes = [f"{HOST}:{port}" for port in self.ports]
        created = subprocess.run(["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas", "0",
                                  "--cluster-yes"], capture_output=True, text=True, timeout=30)
        assert created.returncode == 0, f"redis-cli --cluster create failed:\n{created.stdout}{created.stderr}"
        wait_until("every cluster node reports cluster_state:ok and all agree on the slots", self._agreed)

    def _agreed(self) -> bool:
        if any("cluster_state:ok" not in cli(port, "cluster", "info") for port in self.ports):
            return False
        # `--cluster check` compares every node's slot map; gossip may lag the creation by a moment.
        check = subprocess.run(["redis-cli", "--cluster", "check", f"{HOST}:{self.ports[0]}"],
                               capture_output=True, text=True, timeout=10)
        return check.returncode == 0 and "All nodes agree about slots configuration" in check.stdout

    def flushall(self) -> None:
        for port in self.ports:
            assert cli(port, "flushall") == "OK", f"FLUSHALL failed on {port}"

    def stop(self) -> None:
        self._processes.stop()


class FaultyRedis:
    """One redis-server whose faults are real: stopped (connections refused), frozen by SIGSTOP (connections
    open, nothing answered), and started again on the same port with what it held (an append-only file,
    synced at every write)."""

    def __init__(self, workdir: Path) -> None:
        self._processes = _Processes(workdir)
        self.port = free_port()
        self._frozen = False

    def start(self) -> FaultyRedis:
        argv = self._processes.server_argv(self.port)
        argv[argv.index("--appendonly") + 1] = "yes"
        self._processes.spawn(self.port, f"redis-{self.port}", [*argv, "--appendfsync", "always"])
        return self

    up = start

    def down(self) -> None:
        self.thaw()
        self._processes.terminate(self.port)

    def freeze(self) -> None:
        os.kill(self._processes.by_port[self.port].pid, signal.SIGSTOP)
        self._frozen = True

    def thaw(self) -> None:
        if self._frozen:
            os.kill(self._processes.by_port[self.port].pid, signal.SIGCONT)
            self._frozen = False

    def stop(self) -> None:
        self.thaw()
        self._processes.stop()


class RedisSentinel:
    """A master, one replica, and one sentinel with quorum 1: alone, it can both agree the master is down
    and authorise its own failover (a majority of one)."""

    service_name = "mymaster"

    def __init__(self, workdir: Path) -> None:
        self._processes = _Processes(workdir)
        self.initial_master, self.replica, self.sentinel_port = free_ports(3)
        self._stopped_master: int | None = None

    @property
    def sentinel_nodes(self) -> list[list[object]]:
        # LiteLLM hands these straight to redis.asyncio.Sentinel, which unpacks each as (host, port);
        # YAML/JSON give lists, so lists are what the proxy sees.
        return [[HOST, self.sentinel_port]]

    def start(self) -> RedisSentinel:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        processes, master, replica = self._processes, self.initial_master, self.replica
        # The master waits 5 s (repl-diskless-sync-delay) for more replicas before the first sync: don't.
        no_delay = ("--repl-diskless-sync-delay", "0")
        processes.spawn(master, f"master-{master}", processes.server_argv(master, *no_delay))
        processes.spawn(replica, f"replica-{replica}", processes.server_argv(
            replica, *no_delay, "--replicaof", HOST, str(master)))
        wait_until(f"replica {replica} is in sync with {master}",
                   lambda: info(replica, "replication").get("master_link_status") == "up")
        config = processes.workdir / "sentinel.conf"  # sentinel rewrites it (its state), so it is ours, not a fixture
        config.write_text("\n".join([
            f"port {self.sentinel_port}",
            f"bind {HOST}",
            f"dir {processes.workdir}",
            f"sentinel monitor {self.service_name} {HOST} {master} 1",
            f"sentinel down-after-milliseconds {self.service_name} 1000",
            f"sentinel failover-timeout {self.service_name} 5000",
            f"sentinel parallel-syncs {self.service_name} 1",
        ]) + "\n")
        processes.spawn(self.sentinel_port, "sentinel", ["redis-sentinel", str(config)])
        wait_until(f"the sentinel names {master} as master", lambda: self.master_port() == master)
        # Without the replica in its tables the sentinel has nothing to promote: a failover test would hang.
        wait_until("the sentinel knows the replica", self._sentinel_sees_replica)

    def _sentinel_sees_replica(self) -> bool:
        fields = cli(self.sentinel_port, "sentinel", "replicas", self.service_name).splitlines()
        replica = dict(zip(fields[::2], fields[1::2], strict=False))
        return replica.get("port") == str(self.replica) and replica.get("flags") == "slave"

    def master_port(self) -> int | None:
        """The master's port according to the sentinel (None if it does not answer)."""
        answer = cli(self.sentinel_port, "sentinel", "get-master-addr-by-name", self.service_name).splitlines()
        return int(answer[1]) if len(answer) == 2 else None

    def stop_master(self) -> int:
        """Terminate the current master; returns its port."""
        port = self.master_port()
        assert port is not None, "the sentinel names no master"
        self._processes.terminate(port)
        self._stopped_master = port
        return port

    def wait_for_failover(self, timeout: float = 30) -> int:
        """Until the sentinel names another node as master and that node says it is one; returns its port."""
        assert self._stopped_master is not None, "stop_master() first"

        def promoted() -> bool:
            port = self.master_port()
            return port not in (None, self._stopped_master) and cli(port, "role").startswith("master")

        wait_until(f"the sentinel fails over from {self._stopped_master}", promoted, timeout)
        port = self.master_port()
        assert port is not None
        return port

    def stop(self) -> None:
        self._processes.stop()
