"""The hot-path endpoint transport: signed ``FunctionService/Run`` POSTs over lean HTTP/2 (or HTTP/1.1).

:class:`EndpointPool` is the public API. Underneath: :mod:`.frames` (HTTP/2
framing, HPACK request encoding), :mod:`.hpackdec` (HPACK response decoding:
the table and ``:status``), :mod:`.h2conn` (the HTTP/2 client connection),
:mod:`.h1conn` (the HTTP/1.1 one and its response parser), :mod:`.base` (what
they share), :mod:`.pool` (origins, slots, retries, deadlines), :mod:`.faults` (the
one table of transport faults → Dispatch statuses). ``python -m
loadgen.bench.egress`` measures its client CPU per request against an
``h2``-library client, httpx and h2load.
"""

from loadgen.transport.pool import EndpointPool, Protocol

__all__ = ["EndpointPool", "Protocol"]
