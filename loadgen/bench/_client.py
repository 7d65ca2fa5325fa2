"""The benchmarks' load generator: a separate process driving the Dispatch gRPC API with grpc.aio on uvloop.

Two shapes of load:

* **burst**: ``calls`` calls in ``Dispatch`` RPCs of ``batch`` calls each, with
  ``concurrency`` RPCs in flight; it ends when every RPC is answered (calls
  *accepted*; whether they finished is the caller's business);
* **closed**: ``concurrency`` workers, each dispatching one call and then
  waiting for it with loadgen's ``Wait`` RPC before the next one; it ends when
  ``calls`` calls have finished.

Workers are spread round-robin over ``targets`` (one gRPC channel, so one TCP
connection, per target). The process first runs ``warmup`` calls the same way,
reports ``ready``, waits for ``go``, then runs the measured calls and reports a
:class:`LoadResult` with its own CPU time over them (``time.process_time``:
every thread of the process).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

__all__ = ["LoadClient", "LoadResult", "LoadSpec"]

_CONTEXT = multiprocessing.get_context("spawn")
_MAX_ERRORS = 5


@dataclass(frozen=True)
class LoadSpec:
    """What the client process does (sent to it pickled)."""

    targets: tuple[str, ...]  # "host:port"
    api_key: str
    function: str
    params: dict[str, Any]
    calls: int
    batch: int = 1
    concurrency: int = 8
    closed: bool = False
    warmup: int = 0
    timeout: float = 120.0  # per RPC (and per Wait)


@dataclass
class LoadResult:
    """What the measured part did."""

    calls: int = 0  # accepted (burst) or finished with STATUS_OK (closed)
    failed: int = 0  # calls in failed Dispatch RPCs (burst), or calls not OK (closed)
    rpcs: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    errors: list[str] = field(default_factory=list)


async def _drive(spec: LoadSpec, stubs: list[Any], calls: int) -> LoadResult:
    from loadgen.pb import call_pb2, dispatch_pb2
    from loadgen.protocol import values
    from loadgen.protocol.constants import STATUS_TRAILER

    result = LoadResult()
    metadata = (("authorization", f"Bearer {spec.api_key}"),)
    call = call_pb2.Call(function=spec.function, input=values.encode(spec.params))
    requests: dict[int, Any] = {}
    remaining = calls

    def request(n: int) -> Any:
        found = requests.get(n)
        if found is None:
            found = requests[n] = dispatch_pb2.DispatchRequest(calls=[call] * n)
        return found

    def error(exc: BaseException) -> None:
        if len(result.errors) < _MAX_ERRORS:
            result.errors.append(f"{type(exc).__name__}: {exc}"[:300])

    async def burst(stub: Any) -> None:
        nonlocal remaining
        while remaining > 0:
            n = min(spec.batch, remaining)
            remaining -= n
            try:
                response = await stub.Dispatch(request(n), metadata=metadata, timeout=spec.timeout)
                result.calls += len(response.dispatch_ids)
            except Exception as exc:
                result.failed += n
                error(exc)
            result.rpcs += 1

    async def closed(stub: Any) -> None:
        nonlocal remaining
        one = request(1)
        while remaining > 0:
            remaining -= 1
            try:
                (dispatch_id,) = (await stub.Dispatch(one, metadata=metadata, timeout=spec.timeout)).dispatch_ids
                wait = dispatch_pb2.WaitRequest(dispatch_id=dispatch_id)
                wait.timeout.FromSeconds(int(spec.timeout))
                pending = stub.Wait(wait, metadata=metadata, timeout=spec.timeout + 5)
                await pending
                status = dict(await pending.trailing_metadata()).get(STATUS_TRAILER)
                if status == "STATUS_OK":
                    result.calls += 1
                else:
                    result.failed += 1
                    error(RuntimeError(f"call ended with {status}"))
            except Exception as exc:
                result.failed += 1
                error(exc)
            result.rpcs += 2

    worker = closed if spec.closed else burst
    started_cpu, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(stubs[i % len(stubs)]) for i in range(spec.concurrency)))
    result.wall = time.perf_counter() - started
    result.cpu = time.process_time() - started_cpu
    return result


async def _main(spec: LoadSpec, conn: Connection) -> None:
    import grpc.aio

    from loadgen.pb import dispatch_pb2_grpc

    options = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    channels = [grpc.aio.insecure_channel(target, options=options) for target in spec.targets]
    try:
        stubs = [dispatch_pb2_grpc.DispatchServiceStub(channel) for channel in channels]
        if spec.warmup:
            warm = await _drive(spec, stubs, spec.warmup)
            if warm.failed:
                conn.send({"error": f"warm-up failed: {warm.errors}"})
                return
        conn.send({"ready": True})
        if conn.recv() != "go":
            return
        conn.send({"result": await _drive(spec, stubs, spec.calls)})
    finally:
        for channel in channels:
            await channel.close()


def _child(spec: LoadSpec, conn: Connection) -> None:
    import uvloop

    try:
        uvloop.install()
        asyncio.run(_main(spec, conn))
    except Exception as exc:
        conn.send({"error": f"{type(exc).__name__}: {exc}"})


class LoadClient:
    """The client process, as the benchmark drives it: ``ready()``, read counters, ``go()``, ``result()``."""

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self._conn, theirs = _CONTEXT.Pipe()
        self.process = _CONTEXT.Process(target=_child, args=(spec, theirs), name="loadgen-bench-client", daemon=True)
        self.process.start()
        theirs.close()

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def _receive(self, timeout: float) -> dict[str, Any]:
        if not self._conn.poll(timeout):
            raise TimeoutError(f"the load client did not answer within {timeout:.0f} s")
        message: dict[str, Any] = self._conn.recv()
        if "error" in message:
            raise RuntimeError(f"load client: {message['error']}")
        return message

    def ready(self, timeout: float = 120.0) -> None:
        """Block until the client is connected and warmed up."""
        self._receive(timeout)

    def go(self) -> None:
        self._conn.send("go")

    def result(self, timeout: float) -> LoadResult:
        found: LoadResult = self._receive(timeout)["result"]
        self.process.join(10)
        return found

    def close(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self._conn.close()

    def __enter__(self) -> LoadClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
