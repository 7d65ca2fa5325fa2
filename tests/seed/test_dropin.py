"""loadgen beside the real SDK in one venv and one process, as a drop-in for ``dispatch.test``.

* dispatch-py 0.7.1's own test suite (``tests/test_client.py``, ``test_fastapi.py``,
  ``test_http.py`` from its sdist on PyPI, fetched once into ``.cache/sdist/``) runs in
  .venv-dropin (the real SDK 0.7.1 with FastAPI, and loadgen) with loadgen's classes
  where it imports ``dispatch.test`` from (``tests/dropin/sdk_suite_conftest.py``).
  Every test passes except the documented differences, which are strict xfails.
* ``tests/dropin/beside_sdk_checks.py`` runs in .venv-dropin and in .venv-dropin08
  (dispatch-py 0.8.0): imports in either order, messages across the boundary.

The venvs are made by ``make sdk`` (``tests/dropin/setup_dropin_venvs.sh``, which also
repairs them); when one is missing, the fixture runs that script, and failing to set
them up, or to fetch the sdist, fails the tests. Each run checks that it imports
loadgen from this checkout. The three runs start together.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "tests" / "dropin"
DROPIN_PYTHON = Path(os.environ.get("DROPIN_VENV", ROOT / ".venv-dropin")) / "bin" / "python"
DROPIN08_PYTHON = Path(os.environ.get("DROPIN08_VENV", ROOT / ".venv-dropin08")) / "bin" / "python"
SDIST_DIR = ROOT / ".cache" / "sdist"
SDIST = "dispatch_py-0.7.1.tar.gz"
SDIST_SHA256 = "bd2b0320bc1df2ff93859bc5641dccfa4fc182eb2d37ebb04cbd825d1a0a0ba0"
SDK_TESTS = ("test_client.py", "test_fastapi.py", "test_http.py")
RUN_TIMEOUT = 300.0

# loadgen's documented differences from the old mock (README, "Differences from dispatch.test").
EXPECTED_XFAILS = {
    "test_client.TestClient.test_call_pickle",
    "test_client.TestClient.test_batch",
    "test_fastapi.TestFullFastapi.test_simple_missing_signature",
}


@dataclass
class Run:
    """A pytest run in a drop-in venv, and what its JUnit XML says."""

    proc: subprocess.Popen[str]
    junit: Path
    output: str = ""

    def finish(self) -> dict[str, str]:
        """``{classname.name: outcome}`` (passed, xfailed, skipped, failed, error) once it ends."""
        try:
            self.output, _ = self.proc.communicate(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.output, _ = self.proc.communicate()
            pytest.fail(f"the run did not end in {RUN_TIMEOUT:.0f}s:\n{self.output[-4000:]}")
        if not self.junit.exists():
            pytest.fail(f"pytest wrote no report (exit {self.proc.returncode}):\n{self.output[-4000:]}")
        outcomes = {}
        for case in ET.parse(self.junit).iter("testcase"):
            name = f"{case.get('classname')}.{case.get('name')}"
            outcome = "passed"
            for child in case:
                if child.tag in ("failure", "error"):
                    outcome = "failed" if child.tag == "failure" else "error"
                elif child.tag == "skipped":
                    outcome = "xfailed" if child.get("type") == "pytest.xfail" else "skipped"
            outcomes[name] = outcome
        return outcomes

    def describe(self) -> str:
        return f"exit {self.proc.returncode}:\n{self.output[-6000:]}"


def _sdist() -> Path:
    """The SDK's sdist from PyPI, fetched with pip once and checked against its known hash."""
    path = SDIST_DIR / SDIST
    if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != SDIST_SHA256:
        SDIST_DIR.mkdir(parents=True, exist_ok=True)
        command = [str(DROPIN_PYTHON), "-m", "pip", "download", "--quiet", "--disable-pip-version-check"]
        command += ["--no-deps", "--no-binary", ":all:", "dispatch-py==0.7.1", "-d", str(SDIST_DIR)]
        fetched = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if fetched.returncode != 0 or not path.exists():
            pytest.fail(f"could not fetch dispatch-py 0.7.1's sdist:\n{fetched.stdout}\n{fetched.stderr}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == SDIST_SHA256, f"{path} has sha256 {digest}, not that of dispatch-py 0.7.1's sdist on PyPI"
    return path


def _sdk_suite(folder: Path) -> Path:
    """The SDK's three test files in *folder*, with the conftest that puts loadgen in place of dispatch.test."""
    with tarfile.open(_sdist()) as archive:
        for name in SDK_TESTS:
            member = archive.getmember(f"dispatch_py-0.7.1/tests/{name}")
            source = archive.extractfile(member)
            assert source is not None
            (folder / name).write_bytes(source.read())
    shutil.copyfile(HERE / "sdk_suite_conftest.py", folder / "conftest.py")
    (folder / "pytest.ini").write_text("[pytest]\n")
    return folder


def _start(python: Path, args: list[str], cwd: Path, junit: Path) -> Run:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISPATCH_", "PYTEST_"))}
    env["LOADGEN_CHECKOUT"] = str(ROOT)
    command = [str(python), "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfExX", f"--junitxml={junit}", *args]
    proc = subprocess.Popen(
        command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    return Run(proc, junit)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run]]:
    if not (DROPIN_PYTHON.exists() and DROPIN08_PYTHON.exists()):
        setup = subprocess.run(
            ["bash", str(HERE / "setup_dropin_venvs.sh")], cwd=ROOT, capture_output=True, text=True, timeout=900
        )
        if setup.returncode != 0:
            pytest.fail(
                f"could not set up the drop-in venvs (exit {setup.returncode}):\n{setup.stdout}\n{setup.stderr}"
            )
    suite = _sdk_suite(tmp_path_factory.mktemp("sdk-suite"))
    reports = tmp_path_factory.mktemp("reports")
    checks = ["-c", str(HERE / "checks.ini"), str(HERE / "beside_sdk_checks.py")]
    started = {
        "sdk-suite": _start(DROPIN_PYTHON, [str(suite)], suite, reports / "sdk-suite.xml"),
        "checks-0.7.1": _start(DROPIN_PYTHON, checks, HERE, reports / "checks-071.xml"),
        "checks-0.8.0": _start(DROPIN08_PYTHON, checks, HERE, reports / "checks-080.xml"),
    }
    yield started
    for run in started.values():
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.communicate()


def test_the_sdks_own_suite_passes_with_loadgen_as_dispatch_test(runs: dict[str, Run]) -> None:
    run = runs["sdk-suite"]
    outcomes = run.finish()
    assert len(outcomes) == 36, run.describe()
    assert {name for name, outcome in outcomes.items() if outcome == "xfailed"} == EXPECTED_XFAILS, run.describe()
    others = {name: outcome for name, outcome in outcomes.items() if name not in EXPECTED_XFAILS}
    assert set(others.values()) == {"passed"}, run.describe()
    assert run.proc.returncode == 0, run.describe()


@pytest.mark.parametrize("sdk", ["0.7.1", "0.8.0"])
def test_loadgen_and_the_sdk_in_one_process(runs: dict[str, Run], sdk: str) -> None:
    run = runs[f"checks-{sdk}"]
    outcomes = run.finish()
    assert len(outcomes) >= 8, run.describe()
    assert set(outcomes.values()) == {"passed"}, run.describe()
    assert run.proc.returncode == 0, run.describe()
