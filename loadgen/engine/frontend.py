"""``ShardFrontend``: the Dispatch API of one shard, independent of the wire (gRPC or Connect).

It authenticates, validates, accepts calls into the shard's :class:`AsyncDispatcher`, keeps
the shard's row of the accounting ledger (calls accepted here, and how they ended: the
ingresses never write it themselves), and answers ``Wait`` for any dispatch id: its own
calls directly, other shards' calls by forwarding to the owner (:class:`AsyncEngineClient`).
A dispatch id names its owner: ``SS EEEEEE <24 hex digits>``, shard index ``SS`` and
incarnation ``EEEEEE`` (a restarted shard gets a new one, so ids never repeat and a call
lost with a crashed shard is reported as such).

Errors are :class:`ApiError` with a status code name (``invalid_argument``, ``not_found``, ...:
gRPC's codes, lower-case, as Connect spells them); each ingress answers them in its own wire form.

Admission control is here, once for every ingress (gRPC ``Dispatch``, Connect, Session groups):
:meth:`ShardFrontend.dispatch` counts each valid batch as offered, then accepts it whole or
rejects it whole (``resource_exhausted``, with a message naming the shard, the number and the
setting, and :attr:`ApiError.retry_after_ms`), counted as ``rejected/<reason>`` and in the ledger;
:meth:`ShardFrontend.wait` holds at most ``max_waits`` Waits open.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from loadgen.core.admission import Admission, AdmissionLimits, Load, Rejection, call_bytes
from loadgen.core.results import CallOutcome
from loadgen.core.scheduler import Outcome
from loadgen.engine.client import AsyncEngineClient, EngineUnavailable, WaitAnswer
from loadgen.engine.dispatcher import AsyncDispatcher, CallListener, UnknownCall
from loadgen.engine.ledger import Ledger
from loadgen.pb import call_pb2
from loadgen.pb import status_pb2 as status
from loadgen.protocol.auth import authorization_error, expected_authorization
from loadgen.protocol.validation import InvalidCall, validate_calls

__all__ = ["ApiError", "Peer", "ShardFrontend", "WaitAnswer", "deadline_of", "id_prefix", "owner_of"]

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
    """A Dispatch API failure: a status code name (``"not_found"``) and a message (never holding a key);
    *retry_after_ms* when the client should wait that long before it tries again (admission control)."""

    def __init__(self, code: str, message: str, retry_after_ms: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_ms = retry_after_ms

    @classmethod
    def rejected(cls, rejection: Rejection) -> ApiError:
        return cls("resource_exhausted", rejection.message, rejection.retry_after_ms)


@dataclass(frozen=True)
class Peer:
    """Another shard: its private gRPC address and current incarnation."""

    address: str
    epoch: int


class ShardFrontend:
    """Wire-independent Dispatch API of one shard."""

    def __init__(
        self,
        dispatcher: AsyncDispatcher,
        ledger: Ledger,
        *,
        index: int,
        epoch: int,
        api_key: str,
        max_message_bytes: int | None = None,
        result_limits: str = "",
        admission: AdmissionLimits | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.stats = dispatcher.stats
        self.ledger = ledger
        self.index = index
        self.epoch = epoch
        self.draining = False
        self._expected_auth = expected_authorization(api_key)
        self._peers: dict[int, Peer] = {}
        self.peers_client = AsyncEngineClient(api_key, max_message_bytes=max_message_bytes)
        self._evicted_message = (
            f"the result of this call was evicted: shard {index} keeps its latest {result_limits}"
            if result_limits
            else "the result of this call was evicted"
        )
        dispatcher.on_root_finished = self._ended
        self.admission = Admission(admission or AdmissionLimits(), index)
        self.waits = 0
        """``Wait`` RPCs this shard holds open now (its own calls' and forwarded ones)."""

    def _ended(self, outcome: Outcome) -> None:
        self.ledger.add_ended(self.index, outcome._value_)  # not .value, a Python-level property

    @property
    def peers(self) -> dict[int, Peer]:
        return dict(self._peers)

    def set_peers(self, peers: dict[int, Peer]) -> None:
        """Replace the peer table (sent by the supervisor; a restarted shard has a new epoch)."""
        self._peers = dict(peers)

    def authenticate(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> None:
        problem = authorization_error(metadata, self._expected_auth)
        if problem is not None:
            raise ApiError("unauthenticated", problem)

    def dispatch(self, calls: Sequence[call_pb2.Call], listener: CallListener | None = None) -> list[str]:
        """Validate and accept a batch; ``ApiError`` if it is rejected (nothing accepted then).

        *listener* (a Session's group) is told of each call's end (:meth:`AsyncDispatcher.submit`)."""
        [answer] = self.dispatch_groups(((calls, listener),))
        if isinstance(answer, ApiError):
            raise answer
        return answer

    def dispatch_groups(
        self, groups: Sequence[tuple[Sequence[call_pb2.Call], CallListener | None]]
    ) -> list[list[str] | ApiError]:
        """Validate and accept several batches, each whole or not at all, as :meth:`dispatch` would one after
        the other (a Session message's groups); per batch its ids, or the ``ApiError`` that rejected it.

        Admission is asked once for all the valid batches together; only when they do not all fit is each asked
        in turn (with the load the batches before it added), so the verdicts are those of one by one."""
        if self.draining:
            return [ApiError("unavailable", "the shard is draining and accepts no new calls")] * len(groups)
        answers: list[list[str] | ApiError] = []
        valid: list[tuple[int, Sequence[call_pb2.Call], CallListener | None, list[int]]] = []
        count = held = 0
        for calls, listener in groups:
            try:
                validate_calls(calls)
            except InvalidCall as exc:
                answers.append(ApiError("invalid_argument", str(exc)))
                continue
            sizes = [call_bytes(call.input.ByteSize()) for call in calls]
            valid.append((len(answers), calls, listener, sizes))
            answers.append([])
            count += len(calls)
            held += sum(sizes)
        if not valid:
            return answers
        load = self._load()
        now = time.monotonic()
        if not self.admission.fits(load, count, held, now):
            valid = self._admit_each(valid, load, now, answers)
        if not valid:
            return answers
        accepted = sum(len(calls) for _, calls, _, _ in valid)
        self.stats.count_admission(accepted)
        submitted = self.dispatcher.submit_groups([(calls, listener, sizes) for _, calls, listener, sizes in valid])
        for (position, _, _, _), ids in zip(valid, submitted, strict=True):
            answers[position] = ids
        self.ledger.add_accepted(self.index, accepted)
        return answers

    def _admit_each(
        self,
        valid: list[tuple[int, Sequence[call_pb2.Call], CallListener | None, list[int]]],
        load: Load,
        now: float,
        answers: list[list[str] | ApiError],
    ) -> list[tuple[int, Sequence[call_pb2.Call], CallListener | None, list[int]]]:
        """Admission batch by batch, each with the load of the ones admitted before it; the rejected ones
        are counted and answered, the admitted ones returned."""
        admitted = []
        in_flight, held_bytes = load.in_flight, load.held_bytes
        for entry in valid:
            position, calls, _, sizes = entry
            batch_bytes = sum(sizes)
            rejection = self.admission.calls(
                Load(in_flight, held_bytes, load.waits, load.ended), len(calls), batch_bytes, now
            )
            if rejection is None:
                admitted.append(entry)
                in_flight += len(calls)
                held_bytes += batch_bytes
                continue
            self.stats.count_admission(len(calls), rejection.reason.value)
            self.ledger.add_rejected(self.index, len(calls))
            answers[position] = ApiError.rejected(rejection)
        return admitted

    def _load(self) -> Load:
        dispatcher = self.dispatcher
        in_flight = dispatcher.in_flight
        return Load(in_flight, dispatcher.held_bytes, self.waits, dispatcher.counters.accepted - in_flight)

    async def wait(self, dispatch_id: str, timeout: float | None) -> WaitAnswer:
        """The result of any shard's call once terminal; forwards to the owning shard."""
        owner = owner_of(dispatch_id)
        if owner is None:
            raise ApiError("not_found", f"{dispatch_id[:64]!r} is not a loadgen dispatch id")
        rejection = self.admission.wait(self._load(), time.monotonic())
        if rejection is not None:
            raise ApiError.rejected(rejection)
        self.waits += 1
        try:
            return await self._wait(dispatch_id, owner, timeout)
        finally:
            self.waits -= 1

    async def _wait(self, dispatch_id: str, owner: tuple[int, int], timeout: float | None) -> WaitAnswer:
        index, epoch = owner
        if index == self.index:
            return await self._wait_here(dispatch_id, epoch, timeout)
        peer = self._peers.get(index)
        if peer is None:
            raise ApiError("not_found", f"no shard {index} in this run")
        if peer.epoch != epoch:
            raise ApiError("not_found", f"the call was lost: shard {index} restarted since it was accepted")
        try:
            return await self.peers_client.wait(peer.address, dispatch_id, timeout)
        except EngineUnavailable as exc:
            raise ApiError(exc.code.name.lower() if exc.code is not None else "unknown", exc.details) from None

    async def _wait_here(self, dispatch_id: str, epoch: int, timeout: float | None) -> WaitAnswer:
        if epoch != self.epoch:
            raise ApiError("not_found", f"the call was lost: shard {self.index} restarted since it was accepted")
        try:
            outcome: CallOutcome = await self.dispatcher.wait(dispatch_id, timeout)
        except UnknownCall as exc:
            if exc.evicted:
                raise ApiError("not_found", self._evicted_message) from None
            raise ApiError("not_found", f"unknown dispatch id: shard {self.index} never issued it") from None
        except TimeoutError:
            raise ApiError("deadline_exceeded", "the call is not finished yet") from None
        return WaitAnswer(outcome.result, status.Status.Name(outcome.status), outcome.outcome.value)

    async def close(self) -> None:
        await self.peers_client.close()


def deadline_of(timeout: float | None, remaining: float | None) -> float | None:
    """The tighter of a requested wait and the RPC's own deadline."""
    if remaining is not None and (timeout is None or remaining < timeout):
        return max(0.0, remaining)
    return timeout
