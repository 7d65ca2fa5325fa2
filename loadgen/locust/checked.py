"""The results Locust's users checked, summed over every Locust process (see :mod:`loadgen.core.caller`).

Each process records the results its users waited for (:meth:`DispatchUser.wait_for`).
Workers ship what is new with each stats report (``events.report_to_master``, key
:data:`REPORT_KEY`); the master adds the reports up (``events.worker_report``); the master
or local runner writes the total to ``--dispatch-caller-file`` every few seconds and when it
quits. The web tab shows the "Wrong" column from it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import orjson

from loadgen.core.caller import CallerChecks, caller_document
from loadgen.core.stats.caller import LatestReports

__all__ = ["REPORT_KEY", "checked", "write_caller_file"]

REPORT_KEY = "loadgen_checks"

checked = CallerChecks()
"""The process-wide checks."""


def write_caller_file(
    path: str | Path,
    checks: CallerChecks,
    *,
    started_at: float | None,
    stopping_at: float | None,
    now: float,
    latency: LatestReports | None = None,
) -> None:
    """Write *checks* (and the processes' *latency* reports) to *path* atomically (a temporary file in the
    same folder, then a rename)."""
    target = Path(path)
    document = caller_document(checks, started_at=started_at, stopping_at=stopping_at, now=now, latency=latency)
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
