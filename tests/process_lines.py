"""Reading a child process's output in tests, bounded in time."""

from __future__ import annotations

import subprocess
import threading


def read_line(process: subprocess.Popen[str], marker: str, timeout: float = 30) -> str:
    """The first line of *process*'s stdout containing *marker*, within *timeout* seconds."""
    found: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if marker in line:
                found.append(line)
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    assert found, f"no line with {marker!r} within {timeout}s"
    return found[0]
