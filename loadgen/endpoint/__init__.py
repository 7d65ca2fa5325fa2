"""The built-in reference endpoint: a fast Dispatch ``FunctionService/Run`` target for demos and benchmarks.

``python -m loadgen.endpoint [--host H] [--port P] [--verification-key KEY] [--seed N]`` serves
HTTP/1.1 and h2c on one port. :mod:`.catalogue` lists the functions and their parameters (one
copy, also used to check scenarios), :mod:`.functions` runs them (pure), :mod:`.server` serves
them, :mod:`.process` starts the endpoint as a child process (for ``loadgen run``, benchmarks
and tests).
"""
