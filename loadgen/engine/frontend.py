"""``ShardFrontend``: the Dispatch API of one shard, independent of the wire (gRPC or Connect).

It authenticates, validates, accepts calls into the shard's
:class:`AsyncDispatcher`, and answers ``Wait`` for any dispatch id: its own
calls directly, other shards' calls by forwarding to the owner over gRPC.
A dispatch id names its owner: ``SS EEEEEE <24 hex digits>``, shard index
``SS`` and incarnation ``EEEEEE`` (a restarted shard gets a new one, so ids
never repeat and a call lost with a crashed shard is reported as such).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import grpc
import grpc.aio

from loadgen.core.results import CallOutcome
from loadgen.engine.dispatcher import AsyncDispatcher, UnknownCall
from loadgen.pb import call_pb2, dispatch_pb2, dispatch_pb2_grpc
from loadgen.pb import status_pb2 as status
from loadgen.protocol.auth import authorization_error
from loadgen.protocol.validation import InvalidCall, validate_calls

__all__ = ["ApiError", "Peer", "ShardFrontend", "id_prefix", "owner_of"]

_PREFIX_DIGITS = 8


def id_prefix(index: int, epoch: int) -> str:
    """The first 8 hex digits of every id a shard incarnation issues."""
    return f"{index & 0xFF:02x}{epoch & 0xFFFFFF:06x}"


def owner_of(dispatch_id: str) -> tuple[int, int] | None:
    """``(shard index, incarnation)`` named by a dispatch id, or ``None`` if it is not one of ours."""
    if len(dispatch_id) != 32:
        return None
    try:
        return int(dispatch_id[:2], 16), int(dispatch_id[2:_PREFIX_DIGITS], 16)
    except ValueError:
        return None


class ApiError(Exception):
    """A Dispatch API failure, as a gRPC status code and a message (never holding a key)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Peer:
    """Another shard: its private gRPC address and current incarnation."""

    address: str
    epoch: int


@dataclass(frozen=True)
class WaitAnswer:
    """A terminal call's result and final status name (``STATUS_…``)."""

    result: call_pb2.CallResult
    status: str


class ShardFrontend:
    """Wire-independent Dispatch API of one shard."""

    def __init__(self, dispatcher: AsyncDispatcher, *, index: int, epoch: int, expected_auth: bytes) -> None:
        self.dispatcher = dispatcher
        self.index = index
        self.epoch = epoch
        self.draining = False
        self._expected_auth = expected_auth
        self._peers: dict[int, Peer] = {}
        self._channels: dict[str, grpc.aio.Channel] = {}

    def set_peers(self, peers: dict[int, Peer]) -> None:
        """Replace the peer table (sent by the supervisor; a restarted shard has a new epoch)."""
        self._peers = dict(peers)

    def authenticate(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> None:
        problem = authorization_error(metadata, self._expected_auth)
        if problem is not None:
            raise ApiError(grpc.StatusCode.UNAUTHENTICATED, problem)

    def dispatch(self, calls: Sequence[call_pb2.Call]) -> list[str]:
        """Validate and accept a batch; ``ApiError`` if it is rejected (nothing accepted then)."""
        if self.draining:
            raise ApiError(grpc.StatusCode.UNAVAILABLE, "the shard is draining and accepts no new calls")
        try:
            validate_calls(calls)
        except InvalidCall as exc:
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        return self.dispatcher.submit(calls)

    async def wait(
        self, dispatch_id: str, timeout: float | None, metadata: Sequence[tuple[str, str | bytes]]
    ) -> WaitAnswer:
        """The result of any shard's call once terminal; forwards to the owning shard."""
        owner = owner_of(dispatch_id)
        if owner is None:
            raise ApiError(grpc.StatusCode.NOT_FOUND, f"{dispatch_id[:64]!r} is not a loadgen dispatch id")
        index, epoch = owner
        if index == self.index:
            return await self._wait_here(dispatch_id, epoch, timeout)
        peer = self._peers.get(index)
        if peer is None:
            raise ApiError(grpc.StatusCode.NOT_FOUND, f"no shard {index} in this run")
        if peer.epoch != epoch:
            raise ApiError(
                grpc.StatusCode.NOT_FOUND, f"the call was lost: shard {index} restarted since it was accepted"
            )
        return await self._forward_wait(peer, dispatch_id, timeout, metadata)

    async def _wait_here(self, dispatch_id: str, epoch: int, timeout: float | None) -> WaitAnswer:
        if epoch != self.epoch:
            raise ApiError(
                grpc.StatusCode.NOT_FOUND, f"the call was lost: shard {self.index} restarted since it was accepted"
            )
        try:
            outcome: CallOutcome = await self.dispatcher.wait(dispatch_id, timeout)
        except UnknownCall:
            raise ApiError(grpc.StatusCode.NOT_FOUND, "unknown dispatch id (or its result was evicted)") from None
        except TimeoutError:
            raise ApiError(grpc.StatusCode.DEADLINE_EXCEEDED, "the call is not finished yet") from None
        return WaitAnswer(outcome.result, status.Status.Name(outcome.status))

    async def _forward_wait(
        self, peer: Peer, dispatch_id: str, timeout: float | None, metadata: Sequence[tuple[str, str | bytes]]
    ) -> WaitAnswer:
        channel = self._channels.get(peer.address)
        if channel is None:
            channel = self._channels[peer.address] = grpc.aio.insecure_channel(peer.address)
        stub = dispatch_pb2_grpc.DispatchServiceStub(channel)
        request = dispatch_pb2.WaitRequest(dispatch_id=dispatch_id)
        if timeout is not None:
            request.timeout.FromNanoseconds(int(timeout * 1e9))
        forwarded = [(k, v) for k, v in metadata if k.lower() == "authorization"]
        call = stub.Wait(request, metadata=forwarded, timeout=None if timeout is None else timeout + 5)
        try:
            result = await call
            trailing = await call.trailing_metadata()
        except grpc.aio.AioRpcError as exc:
            raise ApiError(exc.code(), exc.details() or "") from None
        # Pairs, not dict(): in grpcio 1.63 and earlier, grpc.aio Metadata.keys() yields (key, value) pairs.
        final = next((value for key, value in trailing or () if key == "loadgen-status"), "STATUS_UNSPECIFIED")
        return WaitAnswer(result, str(final))

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()


def deadline_of(timeout: float | None, remaining: float | None) -> float | None:
    """The tighter of a requested wait and the RPC's own deadline."""
    if remaining is not None and (timeout is None or remaining < timeout):
        return max(0.0, remaining)
    return timeout
