"""The "Dispatch" tab in Locust's real web UI, seen by headless Chromium (Playwright).

Needs Debian's ``chromium`` (``/usr/bin/chromium``) and the ``playwright`` Python package;
Playwright's own browser downloads are never used. Saves ``results/screenshots/dispatch-tab.png``
and ``dispatch-shards-tab.png``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "locust"))

from test_locust import (
    API_KEY,
    LOCUST,
    ROOT,
    SCENARIOS,
    engine,
    free_port,
    locust_env,
)

from loadgen.core.stats import Snapshot
from loadgen.engine.supervisor import Supervisor

__all__ = ["engine"]  # a fixture, re-exported for pytest

pytestmark = pytest.mark.system

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ROOT / "results" / "screenshots"
FUNCTIONS = ("echo", "sleep", "fanout", "chain", "fail")
MS = re.compile(r"^\d+\.\d{3}$")


@pytest.fixture
def web_ui(engine: Supervisor, tmp_path: Path) -> Iterator[str]:
    """Locust with its web UI on 127.0.0.1 (a free port), against the engine's shards; stopped after."""
    port = free_port()
    command = [LOCUST, "-f", str(SCENARIOS / "quickstart_locustfile.py"), "--web-host", "127.0.0.1"]
    command += ["--web-port", str(port)]
    log = (tmp_path / "locust.log").open("w")
    process = subprocess.Popen(command, env=locust_env(engine), cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(url + "/", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, (tmp_path / "locust.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "Locust's web UI did not come up"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()
    assert API_KEY not in (tmp_path / "locust.log").read_text()


def _rows(stats: dict[str, Any], key: str) -> list[dict[str, Any]]:
    for extended in stats.get("extended_stats") or []:
        if extended["key"] == key:
            rows: list[dict[str, Any]] = extended["data"]
            return rows
    return []


@pytest.mark.timeout(60)
def test_dispatch_tab_shows_exact_percentiles_per_function(web_ui: str) -> None:
    from playwright.sync_api import sync_playwright

    with httpx.Client(base_url=web_ui, timeout=10) as client:
        started = client.post("/swarm", data={"user_count": "4", "spawn_rate": "4"}).json()
        assert started["success"], started
        deadline = time.monotonic() + 20
        while True:  # the bridge polls every 2 s: wait until every function has ended calls
            stats = client.get("/stats/requests").json()
            rows = {row["function"]: row for row in _rows(stats, "dispatch")}
            if all(rows.get(f, {}).get("calls", 0) > 0 for f in FUNCTIONS):
                break
            assert time.monotonic() < deadline, f"no Dispatch rows: {rows}"
            time.sleep(0.5)
        # The tab's µs percentiles (dict-based differences) agree with Snapshot.minus of the same poll.
        exported = client.get("/dispatch/snapshot.json").json()
        run = Snapshot.from_json(exported["run"])
        assert run.counters["accepted"] > 0
        for row in exported["functions"]:
            if row["function"] == "(all)" or not row["calls"] or row["calls"] != row["completed"]:
                continue
            hist = run.histogram("e2e", (row["function"], "completed"))
            assert hist.count == row["calls"]
            p = hist.percentiles((50.0, 90.0, 99.0, 99.9))
            expected = [f"{p[q] / 1000:.3f}" for q in (50.0, 90.0, 99.0, 99.9)] + [f"{hist.max / 1000:.3f}"]
            assert [row["p50"], row["p90"], row["p99"], row["p999"], row["max"]] == expected, row
        page_html = client.get("/").text
        assert API_KEY not in page_html and API_KEY not in str(stats)
        assert "dispatch_api_key" not in page_html  # not among the web UI's editable options

        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
            browser = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_FLAGS,
                viewport={"width": 1600, "height": 900},
            )
            try:
                page = browser.new_page()
                page.goto(web_ui + "/")
                page.get_by_role("tab", name="Dispatch", exact=True).click()
                table = page.locator("table")
                table.get_by_role("cell", name="echo", exact=True).wait_for(timeout=10_000)
                header = [cell.strip() for cell in table.locator("thead th").all_inner_texts()]
                assert header[:2] == ["Function", "Calls ended"] and "e2e p99.9 (ms)" in header
                body = [
                    [cell.strip() for cell in row.locator("td").all_inner_texts()]
                    for row in table.locator("tbody tr").all()
                ]
                by_function = {cells[0]: dict(zip(header, cells, strict=True)) for cells in body}
                assert set(FUNCTIONS) | {"(all)"} <= set(by_function)
                for function in FUNCTIONS:
                    row = by_function[function]
                    assert int(row["Calls ended"]) > 0
                    for column in ("e2e p50 (ms)", "e2e p90 (ms)", "e2e p99 (ms)", "e2e p99.9 (ms)", "e2e max (ms)"):
                        assert MS.match(row[column]), (function, column, row[column])
                    assert float(row["e2e p50 (ms)"]) <= float(row["e2e p99.9 (ms)"]) <= float(row["e2e max (ms)"])
                assert "TEMPORARY_ERROR" in by_function["fail"]["Attempt errors by status"]
                # Waited results are counted by the callers: none wrong (no expect), fire-and-forget ones unknown.
                assert by_function["sleep"]["Wrong results"] == "0" and by_function["echo"]["Wrong results"] == "-"
                page.wait_for_timeout(2500)  # one more refresh of the table, so the picture is current
                page.screenshot(path=str(SCREENSHOTS / "dispatch-tab.png"), full_page=True)

                page.get_by_role("tab", name="Dispatch shards", exact=True).click()
                shards = page.locator("table")
                shards.get_by_role("cell", name="shard-1", exact=True).wait_for(timeout=10_000)
                texts = shards.locator("tbody").inner_text()
                assert "shard-0" in texts and "(all)" in texts
                page.screenshot(path=str(SCREENSHOTS / "dispatch-shards-tab.png"), full_page=True)
            finally:
                browser.close()
        assert client.post("/stop").status_code == 200
    assert (SCREENSHOTS / "dispatch-tab.png").stat().st_size > 10_000
