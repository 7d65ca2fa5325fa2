"""The run folder: ``results/<UTC timestamp>-<scenario>/``, and the versions a run records."""

from __future__ import annotations

import importlib.metadata
import platform
import re
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["new_run_dir", "utc", "versions"]


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


def versions() -> dict[str, str | None]:
    """Versions of Python and of the packages a run depends on (None: not installed)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in ("loadgen", "locust", "grpcio", "protobuf"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found
