"""What the callers saw (``loadgen.core.caller``): checked results that merge exactly, in a file read as written."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from loadgen.core.caller import (
    FORMAT,
    MAX_SAMPLES,
    CallerChecks,
    FunctionChecks,
    WrongSample,
)
from loadgen.locust.checked import write_caller_file
from loadgen.runs.locust_process import read_caller_file


def _record(checks: CallerChecks, function: str, n: int, *, wrong_every: int = 0, failed: str = "") -> None:
    for i in range(n):
        wrong = WrongSample(f"'{i}'", "'x'") if wrong_every and i % wrong_every == 0 else None
        checks.record_result(function, failed or "OK", checked=not failed, wrong=None if failed else wrong)


def test_workers_reports_add_up_to_what_one_process_would_count() -> None:
    alone, worker_a, worker_b, master = CallerChecks(), CallerChecks(), CallerChecks(), CallerChecks()
    for checks, part in ((worker_a, 0), (worker_b, 1)):
        _record(checks, "greet", 10, wrong_every=3)
        _record(checks, "doomed", 4, failed="INVALID_ARGUMENT")
        checks.record_unfinished("greet")
        master.merge(checks.take_unreported())
        _record(checks, "greet", 2)  # after the first report: shipped with the next one
        master.merge(checks.take_unreported())
        assert checks.take_unreported() == {}
        del part
    for _ in range(2):
        _record(alone, "greet", 10, wrong_every=3)
        _record(alone, "doomed", 4, failed="INVALID_ARGUMENT")
        alone.record_unfinished("greet")
        _record(alone, "greet", 2)
    assert master.to_json() == alone.to_json()
    greet = master.functions["greet"]
    assert (greet.results, greet.completed, greet.checked, greet.wrong, greet.unfinished) == (24, 24, 24, 8, 2)
    assert len(greet.samples) == MAX_SAMPLES
    assert master.functions["doomed"].failed == {"INVALID_ARGUMENT": 8} and master.total("wrong") == 8


def test_the_file_round_trips_and_is_never_seen_half_written(tmp_path: Path) -> None:
    path = tmp_path / "caller.json"
    assert read_caller_file(path) is None
    checks = CallerChecks()
    _record(checks, "greet", 200, wrong_every=2)
    stop = threading.Event()
    seen: list[int] = []

    def read_while_written() -> None:
        while not stop.is_set():
            found = read_caller_file(path)
            if found is not None:
                seen.append(found.total("results"))

    write_caller_file(path, checks, started_at=1.0, stopping_at=None, now=2.0)
    reader = threading.Thread(target=read_while_written)
    reader.start()
    for n in range(50):
        checks.record_result("add", "OK", checked=True)
        write_caller_file(path, checks, started_at=1.0, stopping_at=3.0 if n else None, now=4.0)
    stop.set()
    reader.join(10)
    assert seen and all(200 <= count <= 250 for count in seen)
    found = read_caller_file(path)
    assert found is not None and found.started_at == 1.0 and found.stopping_at == 3.0 and found.written_at == 4.0
    assert found.checks["greet"].wrong == 100 and found.checks["add"].checked == 50
    assert not [p for p in tmp_path.iterdir() if p.name != "caller.json"]  # no temporary file left


def test_a_file_that_is_not_a_caller_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "caller.json"
    for text in ("{", '{"format": "other"}', f'{{"format": "{FORMAT}", "checks": []}}'):
        path.write_text(text)
        with pytest.raises(ValueError):
            read_caller_file(path)
    with pytest.raises(ValueError):
        FunctionChecks.from_json({"results": -1})
    with pytest.raises(ValueError):
        CallerChecks().merge({"f": {"failed": {"X": "many"}}})
