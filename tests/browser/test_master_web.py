"""The web UI of ``loadgen run --master --web``: the Dispatch tabs show the workers' shards (Chromium, Playwright).

One ``loadgen worker`` (its shards on 127.0.0.2) joins a master with its web UI; a swarm started from
the UI runs on the worker, and the "Dispatch" and "Dispatch shards" tabs show the calls its shards
ended, the shards named after the worker. Ctrl-C ends the run: one results folder, the worker's
accounting in it, the worker gone. Saves ``results/screenshots/master-dispatch-shards-tab.png``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_dispatch_tab import CHROMIUM, CHROMIUM_FLAGS, ROOT, SCENARIOS, SCREENSHOTS, _rows, free_port

pytestmark = pytest.mark.system


def _wait(condition: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def _up(url: str) -> bool:
    try:
        return httpx.get(url + "/", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.timeout(120)
def test_master_web_ui_shows_the_workers_shards(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    web_port, master_port = free_port(), free_port()
    command = [sys.executable, "-m", "loadgen.cli", "run", str(SCENARIOS / "quickstart.toml"), "--master", "--web"]
    command += ["--web-port", str(web_port), "--master-bind-port", str(master_port), "--shards", "1"]
    command += ["--results", str(tmp_path / "r")]
    err = tmp_path / "master.err"
    master = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err.open("w"))
    worker_command = [sys.executable, "-m", "loadgen.cli", "worker", "--master", f"127.0.0.1:{master_port}"]
    worker = subprocess.Popen(
        [*worker_command, "--bind-host", "127.0.0.2"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{web_port}"
    try:
        _wait(lambda: _up(url) and "worker-0 ready" in err.read_text(), "no master web UI with a worker: ")
        with httpx.Client(base_url=url, timeout=10) as client:
            started = client.post("/swarm", data={"user_count": "4", "spawn_rate": "4"}).json()
            assert started["success"], started

            def echo_rows() -> bool:
                rows = {row["function"]: row for row in _rows(client.get("/stats/requests").json(), "dispatch")}
                return rows.get("echo", {}).get("calls", 0) > 0

            _wait(echo_rows, "no Dispatch rows from the worker")
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
                browser = playwright.chromium.launch_persistent_context(
                    profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
                )
                try:
                    page = browser.new_page()
                    page.goto(url + "/")
                    page.get_by_role("tab", name="Dispatch", exact=True).click()
                    page.locator("table").get_by_role("cell", name="echo", exact=True).wait_for(timeout=10_000)
                    page.get_by_role("tab", name="Dispatch shards", exact=True).click()
                    shards = page.locator("table")
                    shards.get_by_role("cell", name="worker-0/shard-0", exact=True).wait_for(timeout=10_000)
                    page.screenshot(path=str(SCREENSHOTS / "master-dispatch-shards-tab.png"), full_page=True)
                finally:
                    browser.close()
            assert client.post("/stop").status_code == 200
        master.send_signal(signal.SIGINT)
        assert master.wait(60) in (0, 1), err.read_text()[-3000:]
        assert worker.wait(30) == 0
    finally:
        for process in (master, worker):
            if process.poll() is None:
                process.kill()
                process.wait(10)
    (run_dir,) = list((tmp_path / "r").iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    (only,) = summary["workers"]
    assert only["id"] == "worker-0" and only["accounting"]["completed"] > 0
    assert summary["accounting"]["accepted"] == only["accounting"]["accepted"]
