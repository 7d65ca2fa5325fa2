"""The run folder: ``results/<UTC timestamp>-<scenario>/``, its ``incomplete`` marker, and the versions
a run records.

A run marks its folder ``incomplete`` (its pid and start) as it starts and removes the marker once
``summary.json`` is written. A run killed on the way (SIGKILL, a power cut) leaves the marker; the
next ``loadgen run`` on the same results folder finds it (:func:`notice_incomplete`), says so,
and records in the marker that it was noticed.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import re
from datetime import UTC, datetime
from pathlib import Path

import orjson

from loadgen.children import pid_alive

__all__ = [
    "INCOMPLETE_FILE",
    "PROGRESS_FILE",
    "append_progress",
    "mark_complete",
    "mark_incomplete",
    "new_run_dir",
    "notice_incomplete",
    "utc",
    "versions",
]

INCOMPLETE_FILE = "incomplete"
"""The marker of a run folder whose run has not (or never) written its summary."""

PROGRESS_FILE = "progress.jsonl"
"""One line per progress interval, written as the run goes (``summary.json``'s ``series`` once it ends):
what a run killed outright leaves of its statistics."""


def append_progress(run_dir: Path, record: dict[str, object]) -> None:
    """Add one progress *record* (:func:`~loadgen.runs.results.series.interval_record`) to ``progress.jsonl``."""
    with contextlib.suppress(OSError), (run_dir / PROGRESS_FILE).open("ab") as out:
        out.write(orjson.dumps(record) + b"\n")


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-.")
    return slug[:60].rstrip("-.") or "run"


def utc(moment: datetime) -> datetime:
    """*moment* in UTC; a naive datetime is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def new_run_dir(results_root: str | Path, scenario_name: str, now: datetime) -> Path:
    """Create and return ``results_root/<YYYYmmddTHHMMSSZ>-<scenario>/`` (``-2``, ``-3``, ... if taken).

    *now* is the run's start; a naive datetime is taken as UTC. The scenario name is reduced to
    ``[a-z0-9._-]`` for the folder name.
    """
    root = Path(results_root)
    root.mkdir(parents=True, exist_ok=True)
    base = f"{utc(now).strftime('%Y%m%dT%H%M%SZ')}-{_slug(scenario_name)}"
    for n in range(1, 1000):
        candidate = root / (base if n == 1 else f"{base}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"{root / base}: too many runs with this name and second")


def mark_incomplete(run_dir: Path, started: datetime, reason: str = "") -> None:
    """Mark *run_dir* incomplete: this process's pid and the run's start (and *reason*, when known)."""
    marker = {"pid": os.getpid(), "started": utc(started).isoformat(), "reason": reason}
    (run_dir / INCOMPLETE_FILE).write_bytes(orjson.dumps(marker))


def mark_complete(run_dir: Path) -> None:
    """The summary is written: remove the marker."""
    with contextlib.suppress(FileNotFoundError):
        (run_dir / INCOMPLETE_FILE).unlink()


def _alive(pid: object) -> bool:
    """Whether the run a marker names (by its ``pid``, any JSON value) still runs."""
    return isinstance(pid, int) and pid > 0 and pid_alive(pid)


def notice_incomplete(results_root: str | Path) -> list[tuple[Path, str]]:
    """The run folders under *results_root* left incomplete by a run that is gone and not noticed yet,
    with what their marker says; each is marked noticed (so a later run does not repeat it)."""
    found = []
    root = Path(results_root)
    with contextlib.suppress(OSError):
        for marker_path in sorted(root.glob(f"*/{INCOMPLETE_FILE}")):
            try:
                marker = orjson.loads(marker_path.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                continue
            if not isinstance(marker, dict) or marker.get("noticed") or _alive(marker.get("pid")):
                continue
            why = str(marker.get("reason") or "its process ended before it wrote summary.json (killed?)")
            found.append((marker_path.parent, f"started {marker.get('started', '?')}, pid {marker.get('pid')}: {why}"))
            marker["noticed"] = datetime.now(UTC).isoformat()
            with contextlib.suppress(OSError):
                marker_path.write_bytes(orjson.dumps(marker))
    return found


def versions() -> dict[str, str | None]:
    """Versions of Python and of the packages a run depends on (None: not installed)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in ("loadgen", "locust", "grpcio", "protobuf"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found
