"""gRPC on gevent, for Locust processes: imported (once) before any gRPC channel of the plug-in exists.

Locust runs on gevent: importing :mod:`locust` monkey-patches the standard library, and
every user is a greenlet. grpcio's blocking calls would block the whole process unless
gRPC's gevent integration is switched on (``grpc.experimental.gevent.init_gevent()``)
before the first channel; then an RPC blocks only its greenlet. This module does both,
in that order, on import. Consequences:

* importing anything Locust-related from :mod:`loadgen.locust` (``DispatchUser``,
  ``StatsBridge``, ...) patches the importing process for gevent: do it in a Locust process
  (``locust -f``, or a program that runs Locust as a library), not in an asyncio program;
* uvloop never runs in a Locust process. The shards (``loadgen serve``, ``Supervisor``)
  are separate processes with their own uvloop event loops; nothing here starts one.
"""

from __future__ import annotations

import locust  # noqa: F401  # gevent's monkey-patching happens on this import
from grpc.experimental import gevent as grpc_gevent

grpc_gevent.init_gevent()
