"""The seed API, compatible with the old ``dispatch.test`` mock: ``EndpointClient``, ``DispatchService``,
``DispatchServer`` (threads and httpx, in-process). ``from loadgen import ...`` loads these lazily."""
