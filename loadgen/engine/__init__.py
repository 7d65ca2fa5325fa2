"""The engine: the sharded Dispatch service (``loadgen serve``, and what ``loadgen run`` starts).

One settings object (:mod:`.settings`); per shard process a dispatcher, a frontend that owns the
accounting ledger, a gRPC and a Connect ingress (:mod:`.shard`); a supervisor that starts,
watches and drains the shards (:mod:`.supervisor`, messages in :mod:`.control`); one client of
running shards (:mod:`.client`). Importing this package imports none of its modules.
"""
