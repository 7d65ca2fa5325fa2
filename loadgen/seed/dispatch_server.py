"""``DispatchServer``: a gRPC server on 127.0.0.1 (by default) for a :class:`DispatchService`."""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.thread  # the seed API's ThreadPoolExecutor needs this import explicitly

import grpc

from loadgen.pb import dispatch_pb2_grpc

__all__ = ["DispatchServer"]


class DispatchServer:
    """Serve a ``DispatchServiceServicer`` over insecure gRPC at ``hostname:port`` (0 picks a free port)."""

    def __init__(
        self,
        service: dispatch_pb2_grpc.DispatchServiceServicer,
        hostname: str = "127.0.0.1",
        port: int = 0,
        *,
        max_workers: int = 64,
    ) -> None:
        self.service = service
        self.hostname = hostname
        self._executor = concurrent.futures.thread.ThreadPoolExecutor(max_workers=max_workers)
        self._server = grpc.server(self._executor, options=[("grpc.so_reuseport", 0)])
        dispatch_pb2_grpc.add_DispatchServiceServicer_to_server(service, self._server)
        address = f"[{hostname}]:{port}" if ":" in hostname else f"{hostname}:{port}"
        try:
            self.port = self._server.add_insecure_port(address)
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {address}: {exc}") from None
        if self.port == 0:
            raise OSError(f"cannot listen on {address} (address in use?)")

    @property
    def url(self) -> str:
        """``http://hostname:port`` with the bound port."""
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Start serving (returns at once)."""
        self._server.start()

    def wait(self) -> None:
        """Block until the server stops."""
        self._server.wait_for_termination()

    def stop(self, grace: float | None = 1.0) -> None:
        """Stop serving, let RPCs in progress end within *grace* seconds, and join."""
        self._server.stop(grace).wait()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> DispatchServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
