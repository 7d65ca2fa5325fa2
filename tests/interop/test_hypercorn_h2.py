"""loadgen over HTTP/2 cleartext to the real dispatch-py 0.7.1 endpoint served by hypercorn.

``dispatch.Client`` (0.7.1, gRPC) → ``loadgen serve ENDPOINT --http h2`` → ``sdk_app.py --server
hypercorn``. ``--http h2`` forces HTTP/2 with prior knowledge, so nothing silently falls back to
HTTP/1.1; the app reports the ASGI ``http_version`` of every Dispatch request it got, and the tests
check it is ``"2"``. hypercorn runs with ``keep_alive_max_requests`` = 20 (conftest's
``HYPERCORN_MAX_REQUESTS``): on the request after that many it sends a GOAWAY on the connection,
and (with h2 4.1.0) it cannot answer the streams still open there (it parses a whole burst before
acting on the limit, so that can be all of them): loadgen has to reconnect and resend them.

Runs are at-least-once across a GOAWAY (a stream the server received but never answered is sent
again), so function run counts are checked with ``>=`` here, unlike over HTTP/1.1.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

pytestmark = [pytest.mark.system, pytest.mark.timeout(90)]


def _delta(before: dict[str, int], after: dict[str, int], key: str) -> int:
    return after.get(key, 0) - before.get(key, 0)


def _assert_only_http2(app: Any) -> dict[str, int]:
    versions: dict[str, int] = app.http_versions()
    assert set(versions) == {"2"}, f"the endpoint saw other HTTP versions than 2: {versions}"
    return versions


def test_add_over_h2(loadgen_h2: Any, hypercorn_app: Any) -> None:
    before = hypercorn_app.http_versions()
    [dispatch_id] = loadgen_h2.dispatch(("add", [20, 22]))
    outcome = loadgen_h2.wait(dispatch_id)
    assert not outcome.result.HasField("error"), outcome.result
    assert outcome.value == 42
    assert outcome.status == "STATUS_OK"
    after = _assert_only_http2(hypercorn_app)
    assert _delta(before, after, "2") >= 1


def test_fanout_with_gather_over_h2(loadgen_h2: Any, hypercorn_app: Any) -> None:
    before = hypercorn_app.counts()
    [dispatch_id] = loadgen_h2.dispatch(("fanout", [3]))
    outcome = loadgen_h2.wait(dispatch_id)
    assert not outcome.result.HasField("error"), outcome.result
    assert outcome.value == [0, 1, 4]
    assert outcome.status == "STATUS_OK"
    after = hypercorn_app.counts()
    assert _delta(before, after, "fanout") >= 1
    assert _delta(before, after, "square") >= 3
    _assert_only_http2(hypercorn_app)


def test_burst_across_goaways(loadgen_h2: Any, hypercorn_app: Any) -> None:
    """~100 calls, five times hypercorn's per-connection limit: every one ends OK across the GOAWAYs."""
    calls = 100
    limit = hypercorn_app.keep_alive_max_requests
    assert limit is not None and calls > 4 * limit
    counts_before = hypercorn_app.counts()
    conns_before = hypercorn_app.connections().get("2", {})

    ids = loadgen_h2.dispatch(*[("add", [i, 1000]) for i in range(calls)])
    assert len(set(ids)) == calls
    for i, dispatch_id in enumerate(ids):
        outcome = loadgen_h2.wait(dispatch_id)
        assert not outcome.result.HasField("error"), (i, outcome.result)
        assert outcome.status == "STATUS_OK", (i, outcome.status)
        assert outcome.value == i + 1000

    assert _delta(counts_before, hypercorn_app.counts(), "add") >= calls  # some may have run twice (see above)
    _assert_only_http2(hypercorn_app)
    conns_after = hypercorn_app.connections()["2"]
    used = {peer: n - conns_before.get(peer, 0) for peer, n in conns_after.items() if n > conns_before.get(peer, 0)}
    assert sum(used.values()) >= calls
    # hypercorn sends its GOAWAY on the request that takes a connection past the limit, so every connection
    # that carried more than `limit` requests got one. (It parses a whole burst of streams before it acts on
    # the limit, so one connection can carry far more than limit + 1 requests, none of them answered.)
    goaways = sorted(conns_after[peer] for peer in used if conns_after[peer] > limit)
    assert goaways, f"no connection went past hypercorn's keep_alive_max_requests={limit}: {conns_after}"
    assert len(used) > len(goaways), f"loadgen never reconnected after the GOAWAYs: {conns_after}"
    print(f"burst: {len(used)} connections, {len(goaways)} past the limit (GOAWAY) carrying {goaways} requests")


def test_flaky_retry_over_h2(loadgen_h2: Any, hypercorn_app: Any) -> None:
    key = f"h2-flaky-{uuid.uuid4().hex[:12]}"
    [dispatch_id] = loadgen_h2.dispatch(("flaky", [key, 2]))
    outcome = loadgen_h2.wait(dispatch_id)
    assert not outcome.result.HasField("error"), outcome.result
    assert outcome.value == "ok"
    assert outcome.status == "STATUS_OK"
    assert hypercorn_app.counts()[f"flaky:{key}"] >= 3  # TemporaryError twice, then success
    _assert_only_http2(hypercorn_app)
