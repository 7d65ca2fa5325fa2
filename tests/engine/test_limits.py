"""A shard's descriptors: the soft limit raised, the gRPC cap kept below it, one log line per episode."""

from __future__ import annotations

import logging
import resource
import subprocess
import sys

import pytest

from loadgen.engine.limits import FD_RESERVE, DescriptorWatch, shard_cap


def test_the_soft_descriptor_limit_is_raised_to_the_hard_one() -> None:
    code = (
        "import resource; from loadgen.engine.limits import raise_fd_limit;"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE);"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard));"
        "print(raise_fd_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0], min(hard, 1 << 20))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    returned, now, expected = (int(n) for n in done.stdout.split())
    assert returned == now == expected > 256
    assert resource.getrlimit(resource.RLIMIT_NOFILE)  # this process left alone


def test_the_cap_fits_both_addresses_under_the_descriptor_limit() -> None:
    assert shard_cap(2048, 100_000, own=300) == 2048
    assert shard_cap(2048, 1024, own=258) == (1024 - 258 - FD_RESERVE) // 2  # 351 on each address
    assert shard_cap(2048, 100, own=200) == 1  # never 0: the shard still serves


def test_the_watch_logs_once_per_episode(caplog: pytest.LogCaptureFixture) -> None:
    counts = iter([30, 40, 50, 55, 41, 30, 50])
    watch = DescriptorWatch(3, cap=20, fd_limit=10_000, count=lambda: next(counts))  # baseline 30
    with caplog.at_level(logging.WARNING, logger="loadgen.shard"):
        seen = [watch.check() for _ in range(6)]
    assert seen == [40, 50, 55, 41, 30, 50]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and watch.episodes == 2  # 50 (at 20 above the start), then again after 30
    assert lines[0].startswith("shard 3: 20 connections, at its cap of 20 gRPC connections (max_connections;")
