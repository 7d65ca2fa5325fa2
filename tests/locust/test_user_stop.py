"""A user Locust stops in the instant its wait ends is not killed inside the task it starts then.

Locust kills a waiting user at once (``User.stop``), but the kill is delivered after the user has already
resumed: a wait of 0 s has queued its wake-up before the kill. The user then starts its next task, issues
a call the shards accept, and the kill lands in the wait for that call's result (counted as unfinished,
failing a clean run). A :class:`DispatchUser` whose wait is over stops at its next step instead."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_a_user_stopped_as_its_wait_ends_starts_no_task_to_be_killed_in() -> None:
    script = Path(__file__).with_name("stop_race.py")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=True)
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    # Locust's own user resumes, starts its fourth task and is killed inside it (the race is real) ...
    assert seen["locust"] == {"started": [1, 2, 3, 4], "cut": [4]}
    # ... a DispatchUser stops at its next step instead: no task is started to be cut off.
    assert seen["loadgen"] == {"started": [1, 2, 3], "cut": []}
