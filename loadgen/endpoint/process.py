"""The reference endpoint as a child process: the one launcher of ``loadgen run``, the benchmarks and the tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any

from loadgen.children import die_with_parent_term

__all__ = ["EndpointProcess", "reference_endpoint"]


class EndpointProcess:
    """``python -m loadgen.endpoint`` on 127.0.0.1 (*port* 0: a free one), started by :meth:`start`.

    *verification_key* (base64 or PEM) makes it verify signatures; ``None`` turns verification
    off (``DISPATCH_VERIFICATION_KEY`` is not passed on). *extra* are more arguments (failure
    injection, a seed). *stderr* is where its warnings go (default: this process's). *cpu* pins
    it to one CPU (benchmarks). It dies with this process and runs in a session of its own, so a
    Ctrl-C in the terminal reaches only its parent, which stops it in order.
    """

    def __init__(
        self,
        verification_key: str | None,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        extra: Sequence[str] = (),
        stderr: int | IO[Any] | None = None,
        cpu: int | None = None,
        timeout: float = 20.0,
    ) -> None:
        self.verification_key = verification_key
        self.port = port
        self.host = host
        self.extra = tuple(extra)
        self.stderr = stderr
        self.cpu = cpu
        self.timeout = timeout
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def start(self) -> str:
        """Start it and return its URL once it listens; ``RuntimeError`` if it does not in time."""
        command = [sys.executable, "-m", "loadgen.endpoint", "--host", self.host, "--port", str(self.port)]
        if self.verification_key is not None:
            command += ["--verification-key", self.verification_key]
        command += self.extra
        env = {k: v for k, v in os.environ.items() if k != "DISPATCH_VERIFICATION_KEY"}
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            env=env,
            start_new_session=True,
            preexec_fn=die_with_parent_term,
        )
        try:
            self.url = _read_url(self.process, self.timeout)
        except BaseException:
            self.stop()
            raise
        if self.cpu is not None:
            os.sched_setaffinity(self.process.pid, {self.cpu})
        return self.url

    def kill(self) -> None:
        """SIGKILL it (a crash), and reap it."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not ended within 5 s."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> EndpointProcess:
        if self.process is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextmanager
def reference_endpoint(
    verification_key: str, extra: Sequence[str] = (), timeout: float = 20.0, host: str = "127.0.0.1"
) -> Iterator[str]:
    """Run the reference endpoint on a free port of *host* (with *extra* arguments); yield its URL;
    stop it after, on every exit path."""
    with EndpointProcess(verification_key, host=host, extra=extra, timeout=timeout) as endpoint:
        yield endpoint.url


def _read_url(process: subprocess.Popen[str], timeout: float) -> str:
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
