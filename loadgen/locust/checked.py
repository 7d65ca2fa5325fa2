"""The results Locust's users checked, summed over every Locust process (see :mod:`loadgen.core.caller`).

Each process records the results its users waited for (:meth:`DispatchUser.wait_for`).
Workers ship what is new with each stats report (``events.report_to_master``, key
:data:`REPORT_KEY`); the master adds the reports up (``events.worker_report``); the master
or local runner writes the total to ``--dispatch-caller-file`` every few seconds and when it
quits. The web tab shows the "Wrong" column from it.
"""

from __future__ import annotations

from loadgen.core.caller import CallerChecks

__all__ = ["REPORT_KEY", "checked"]

REPORT_KEY = "loadgen_checks"

checked = CallerChecks()
"""The process-wide checks."""
