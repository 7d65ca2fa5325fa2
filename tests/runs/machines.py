"""Several "machines" on this host for distributed runs: network namespaces, else loopback addresses.

As root, with ``ip netns`` working, :func:`make_machines` makes one namespace per worker machine,
each with a veth pair into a bridge of the root namespace (``10.X.Y.1``, where the master binds;
the machines are ``.2``, ``.3``, ...): a worker and its shards see their own loopback and their
own address, and reach the master only across the bridge. Otherwise the machines are loopback
addresses: the master on 127.0.0.1, each worker's shards on 127.0.0.2, 127.0.0.3, ...
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Machines:
    """Where the master binds, and how to start a command on each worker machine."""

    kind: str  # "netns" or "loopback"
    master_host: str
    prefixes: list[list[str]]
    bind_hosts: list[str]
    namespaces: list[str] = field(default_factory=list)
    bridge: str = ""

    def worker_command(self, index: int, master: str, *extra: str) -> list[str]:
        command = [sys.executable, "-m", "loadgen.cli", "worker", "--master", master]
        return [*self.prefixes[index], *command, "--bind-host", self.bind_hosts[index], *extra]

    def start_worker(self, index: int, master: str, log: Path, *extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.worker_command(index, master, *extra),
            cwd=ROOT,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            text=True,
        )

    def close(self) -> None:
        for namespace in self.namespaces:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)
        if self.bridge:
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)


def _run_all(commands: Sequence[Sequence[str]]) -> bool:
    return all(subprocess.run(list(c), capture_output=True, check=False).returncode == 0 for c in commands)


def _namespaces(count: int) -> Machines | None:
    if os.geteuid() != 0:
        return None
    pid = os.getpid()
    tag = f"lg{pid % 100000}"
    subnet = f"10.{200 + pid % 50}.{pid % 250}"
    machines = Machines("netns", f"{subnet}.1", [], [], bridge=f"{tag}b")
    ok = _run_all(
        [
            ["ip", "link", "add", machines.bridge, "type", "bridge"],
            ["ip", "addr", "add", f"{subnet}.1/24", "dev", machines.bridge],
            ["ip", "link", "set", machines.bridge, "up"],
        ]
    )
    for index in range(count):
        if not ok:
            break
        namespace, outside, inside = f"{tag}n{index}", f"{tag}h{index}", f"{tag}p{index}"
        machines.namespaces.append(namespace)
        inside_ns = ["ip", "netns", "exec", namespace]
        ok = _run_all(
            [
                ["ip", "netns", "add", namespace],
                ["ip", "link", "add", outside, "type", "veth", "peer", "name", inside],
                ["ip", "link", "set", inside, "netns", namespace],
                ["ip", "link", "set", outside, "master", machines.bridge],
                ["ip", "link", "set", outside, "up"],
                [*inside_ns, "ip", "addr", "add", f"{subnet}.{index + 2}/24", "dev", inside],
                [*inside_ns, "ip", "link", "set", inside, "up"],
                [*inside_ns, "ip", "link", "set", "lo", "up"],
            ]
        )
        machines.prefixes.append(inside_ns)
        machines.bind_hosts.append("127.0.0.1")  # the machine's own loopback
    if not ok:
        machines.close()
        return None
    return machines


def make_machines(count: int) -> Machines:
    """*count* worker machines: namespaces when possible, loopback addresses otherwise."""
    found = _namespaces(count)
    if found is not None:
        return found
    return Machines("loopback", "127.0.0.1", [[] for _ in range(count)], [f"127.0.0.{i + 2}" for i in range(count)])
