"""The verdict files of a run for CI: ``gates.json`` and JUnit XML (one ``testcase`` per gate)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import orjson

from loadgen.runs.gates import GateResult

__all__ = ["write_gates_json", "write_junit"]


def write_gates_json(results: Sequence[GateResult], path: str | Path) -> None:
    """Write ``{"passed": bool, "failed": n, "gates": [...]}`` to *path*."""
    document = {
        "passed": all(result.passed for result in results),
        "failed": sum(not result.passed for result in results),
        "gates": [result.to_json() for result in results],
    }
    Path(path).write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")


def write_junit(results: Sequence[GateResult], path: str | Path, suite_name: str, duration_s: float = 0.0) -> None:
    """Write a JUnit XML report to *path*: one ``testcase`` per gate, ``failure`` for a failed one."""
    failures = sum(not result.passed for result in results)
    counts = {"tests": str(len(results)), "failures": str(failures), "errors": "0", "skipped": "0"}
    root = ET.Element("testsuites", {"name": suite_name, **counts, "time": f"{duration_s:.3f}"})
    suite = ET.SubElement(root, "testsuite", {"name": suite_name, **counts, "time": f"{duration_s:.3f}"})
    for result in results:
        name = ("implicit: " if result.implicit else "") + f"{result.metric} {result.condition}"
        case = ET.SubElement(suite, "testcase", {"classname": suite_name, "name": name, "time": "0"})
        if not result.passed:
            kind = "NoData" if result.observed is None else "GateFailed"
            failure = ET.SubElement(case, "failure", {"message": result.message, "type": kind})
            failure.text = f"{result.message}\nobserved: {result.observed_text}\ncondition: {result.condition}\n"
        out = ET.SubElement(case, "system-out")
        out.text = f"observed: {result.observed_text}"
    ET.indent(root)
    ET.ElementTree(root).write(Path(path), encoding="utf-8", xml_declaration=True)
