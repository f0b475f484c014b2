"""A real Ray cluster on 127.0.0.1 for the tests: a head and one more node, each a
`ray start --block` process of this test session (the way a cluster is started by hand or
under SLURM), stopped at the end and checked gone.

The second node runs, where the machine allows it, in a mount namespace of its own in
which one folder (`hidden`) is an empty tmpfs: a node that cannot see a folder the driver
sees, as on a cluster without a shared file system there.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
RAY = str(Path(sys.executable).parent / "ray")
_PR_SET_PDEATHSIG = 1
# Without token authentication, whatever `~/.ray` holds: a private cluster on the loopback.
# Workers at the test's own priority: Ray starts them 15 nicer by default, which on a busy
# machine starves them behind everything else and only stretches the waits.
NODE_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_worker_niceness": "0"}


def wait_for(what: str, check: Callable[[], T | None], seconds: float) -> T:
    """Poll `check` until it returns something other than None or False; fail naming `what`
    after `seconds`. Every wait of these tests is on a condition, bounded."""
    deadline = time.monotonic() + seconds
    while True:
        got = check()
        if got is not None and got is not False:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {seconds:.0f}s waiting for {what}")
        time.sleep(0.05)


def _die_with_parent() -> None:
    """A node started here gets SIGTERM (and stops its processes) if pytest itself dies."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _namespaces_allowed() -> bool:
    """Whether this process may give a child a mount namespace of its own (root, usually)."""
    try:
        done = subprocess.run(["unshare", "--mount", "true"], capture_output=True, timeout=60)
    except OSError:
        return False
    return done.returncode == 0


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@dataclass
class LocalCluster:
    address: str
    hidden: Path | None  # a folder the second node does not see; None: not possible here
    nodes: list[subprocess.Popen]
    temps: list[Path]  # the nodes' temporary folders (sockets, logs), removed at the end


def start_cluster(root: Path, env: dict[str, str] | None = None) -> LocalCluster:
    """Head (1 CPU) and a second node (1 CPU) on 127.0.0.1, each with a temporary folder of
    its own (short: Ray's socket paths must stay under 108 bytes), `NODE_ENV` and `env` set
    (their workers inherit it)."""
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--block", "--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=0"]
    common += ["--disable-usage-stats", "--object-store-memory=100000000"]
    head = [RAY, "start", "--head", f"--port={port}", "--include-dashboard=false", *common]
    node = [RAY, "start", f"--address={address}", *common]
    hidden = (root / "hidden") if _namespaces_allowed() else None
    if hidden is not None:
        hidden.mkdir()
        mount = 'mount -t tmpfs duiit-hidden "$0" && exec "$@"'
        node = ["unshare", "--mount", "--propagation", "private", "sh", "-c", mount, hidden, *node]
    procs, temps = [], []
    for cmd in (head, node):
        temps.append(Path(tempfile.mkdtemp(prefix="duiit-ray-", dir="/tmp")))
        procs.append(
            subprocess.Popen(
                [*map(str, cmd), f"--temp-dir={temps[-1]}"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={**os.environ, **NODE_ENV, **(env or {})},
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        )
    return LocalCluster(address, hidden, procs, temps)


def wait_until_up(cluster: LocalCluster, seconds: float) -> None:
    """Both nodes joined (asked as a driver would, then disconnected)."""
    import ray

    ray.init(address=cluster.address, log_to_driver=False, logging_level="WARNING")
    try:
        wait_for("2 live Ray nodes", lambda: sum(n["Alive"] for n in ray.nodes()) == 2, seconds)
    finally:
        ray.shutdown()


def stop_cluster(cluster: LocalCluster, seconds: float) -> list[int]:
    """SIGTERM each `ray start` (it stops the processes it started), then wait until every
    process they had started is gone; returns those still alive at the deadline (killed)."""
    ours = {p.pid for p in cluster.nodes}
    for p in cluster.nodes:
        ours |= descendants(p.pid)
    for p in cluster.nodes:
        p.send_signal(signal.SIGTERM)
    for p in cluster.nodes:
        try:
            p.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=60)
    deadline = time.monotonic() + seconds
    while any(alive(pid) for pid in ours) and time.monotonic() < deadline:
        time.sleep(0.1)
    stray = sorted(pid for pid in ours if alive(pid))
    for pid in stray:
        os.kill(pid, signal.SIGKILL)
    for temp in cluster.temps:
        shutil.rmtree(temp, ignore_errors=True)
    return stray
