"""A ``Wait`` answer's trailers: the final status and how the call ended, written and read back by one type."""

from __future__ import annotations

from loadgen.engine.client import WaitAnswer, wait_answer
from loadgen.pb import call_pb2


def test_a_cancelled_call_travels_as_timeout_and_reads_back_as_cancelled() -> None:
    result = call_pb2.CallResult(dispatch_id="x")
    sent = WaitAnswer(result, "STATUS_TIMEOUT", "cancelled")
    assert sent.trailers() == (("loadgen-status", "STATUS_TIMEOUT"), ("loadgen-outcome", "cancelled"))
    wire = [(key, value.encode()) for key, value in sent.trailers()]  # grpc may hand back bytes
    read = wait_answer(result, wire)
    assert read == sent and read.short_status == "CANCELLED"
    expired = wait_answer(result, [("loadgen-status", "STATUS_TIMEOUT"), ("loadgen-outcome", "expired")])
    assert expired.short_status == "TIMEOUT"
    older = wait_answer(result, [("loadgen-status", "STATUS_OK")])  # a shard that does not say the outcome
    assert (older.outcome, older.short_status) == ("", "OK")
    assert wait_answer(result, None).short_status == "UNSPECIFIED"
