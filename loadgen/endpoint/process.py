"""The reference endpoint as a child process, for ``loadgen run``, benchmarks and tests."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from loadgen.children import die_with_parent_term

__all__ = ["reference_endpoint"]


@contextmanager
def reference_endpoint(verification_key: str, extra: Sequence[str] = (), timeout: float = 20.0) -> Iterator[str]:
    """Run ``python -m loadgen.endpoint`` on a free port of 127.0.0.1 (with *extra* arguments);
    yield its URL; stop it after, on every exit path."""
    command = [sys.executable, "-m", "loadgen.endpoint", "--port", "0", "--verification-key", verification_key]
    command += list(extra)
    # Its own session: a Ctrl-C in the terminal reaches the parent, which stops it in order.
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=die_with_parent_term
    )
    try:
        yield _read_endpoint_url(process, timeout)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _read_endpoint_url(process: subprocess.Popen[str], timeout: float) -> str:
    found: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if "listening on " in line:
                found.append(line.split("listening on ", 1)[1].split()[0])
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if not found:
        raise RuntimeError(f"the reference endpoint did not start within {timeout:.0f}s (exit code {process.poll()})")
    return found[0]
