"""Inbound HTTP for loadgen's own servers: the one HTTP/1.1 server loop (h11) and its replies.

Used by the reference endpoint (:mod:`loadgen.endpoint.server`, beside its h2c handler) and
the engine's Connect ingress (:mod:`loadgen.engine.ingress_connect`). Imports only
:mod:`loadgen.protocol` (the Connect error shape).
"""
