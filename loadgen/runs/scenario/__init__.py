"""Scenario files: what to load-test, how hard, for how long, and what counts as passing.

A scenario is a TOML file (read with :mod:`tomllib`). Every key is optional unless
marked *required*; an unknown key is an error (with a "did you mean" suggestion).
``scenarios/README.md`` documents the same format with examples.

.. code-block:: toml

    name = "quickstart"                 # default: the file name without .toml
    description = "..."                 # default: ""

    [target]                            # the endpoint under test
    reference = true                    # default: true unless url is set; start the built-in endpoint
    # url = "http://127.0.0.1:8000"     # or your endpoint (http:// or https://)
    # sdk = "dispatch-py"               # how inputs are encoded and outputs read: "reference" (the
    #                                   # default for the reference endpoint), "dispatch-py" (the
    #                                   # default for a url), "dispatch-go" or "raw"
    # signing_key = "env:LOADGEN_SIGNING_KEY"   # base64 seed, PEM text, PEM file path (relative
    #                                   # to this file, else to the current folder) or env:VAR;
    #                                   # default: a new key per run
    # verification_key = "..."          # reference endpoint only: its public key (default: the
    #                                   # signing key's); base64, PEM text, PEM path or env:VAR

    [target.inject]                     # reference endpoint only: fail attempts on purpose
    rate = 0.3                          # required: probability that an attempt fails, 0..1
    status = "TEMPORARY_ERROR"          # default TEMPORARY_ERROR; any failure status
    # seed = 42                         # seed of the endpoint's RNG (default: random)

    [engine]                            # the sharded engine loadgen starts on 127.0.0.1
    shards = 2                          # default "auto" (one per core)
    connections = 2                     # per shard, to the endpoint (default 2)
    max_streams = 100                   # per connection (default 100)
    expiration = "60s"                  # default call expiration (default 60s)
    backoff = "50ms"                    # first retry delay (default 50ms)
    max_backoff = "2s"                  # default 2s; at least backoff
    request_timeout = "30s"             # per endpoint attempt (default 30s)
    http = "auto"                       # "auto", "h2" or "http/1.1"
    result_retention = 100000           # results each shard keeps for Wait (default 100000)
    #                                   # (the engine's settings: loadgen.engine.settings, also
    #                                   # loadgen serve's flags)
    # addresses = ["10.0.0.5:4450"]     # or: shards already running elsewhere (none of the keys above)
    # api_key = "env:DISPATCH_API_KEY"  # with addresses only (default: env:DISPATCH_API_KEY)

    [[workload]]                        # one per kind of call; default: the quickstart mix
    function = "echo"                   # required
    weight = 50                         # relative share of calls, > 0 (default 1)
    input = { message = "hello" }       # reference: a table (default {}), checked for its functions;
    #                                   # dispatch-go: one value; raw: { type_url = "...", base64 = "..." }
    input_bytes = 0                     # reference only: add a "padding" string of this size: "4KiB"
    # args = ["bob"]                    # dispatch-py: positional arguments (default [])
    # kwargs = { punct = "!" }          # dispatch-py: keyword arguments (default {})
    # expect = "hello bob!"             # the expected output: a different one counts as wrong
    batch = 1                           # calls per Dispatch RPC, 1..10000 (default 1)
    wait = true                         # wait for each result with the Wait RPC (default true;
    #                                   # expect needs it)

    [load]
    model = "closed"                    # "closed" (default), "open" or "search" (a capacity search)
    users = 16                          # closed: concurrent users (default 16)
    spawn_rate = 16                     # closed: users started per second (default: users)
    duration = "20s"                    # closed: run length (default 20s)
    # stages = [{ duration = "1m", rate = 100, ramp = true }, { duration = "8m", rate = 100 }]
    #                                   # open, required: calls per second per stage; ramp = true
    #                                   # goes linearly from the previous stage's rate (0 at first)
    # max_in_flight = 1000              # open: cap on outstanding requests (default 1000)
    processes = 1                       # Locust worker processes, or "auto" (default 1)
    stop_timeout = "10s"                # after the load stops, how long calls in flight may take to
    #                                   # end; those still running then are reported in flight

    [load.search]                       # search (and loadgen run --find-capacity): open-model steps
    start_rate = 10                     # calls/s of the first step (default 10); doubling until a
    max_rate = 100000                   # step fails, never above this (default 100000), halving
    min_rate = 1                        # from a failing first step, never below this (default 1),
    precision = "5%"                    # then bisecting until within this (default 5%, or 0.05)
    step = "10s"                        # each step's judged hold (default 10s)
    warmup = "4s"                       # before it, not judged (default 4s; whole 2 s reports)
    max_steps = 20                      # default 20
    # min_capacity = 200                # exit 1 unless the capacity found is at least this
    # abort_in_flight = 1000            # a step breaks at this many calls in flight (default:
    #                                   # max_in_flight times the largest batch)
    retries = 0                         # a failing step is tried again this many times (default 0)

    [gates]                             # metric = condition (see loadgen.runs.metrics for the metrics)
    "latency.p99" = "< 250ms"
    "rpc.fail_ratio" = "< 1%"
    "latency.p99{function=echo}" = { condition = "< 50ms", abort_on_fail = true, delay = "10s" }
    "retries.ratio" = ["> 0.2", "< 0.4"]    # several conditions on one metric

Durations are strings with units ``us``/``µs``, ``ms``, ``s``, ``m``, ``h`` (``"1m30s"``,
``"1.5s"``) or plain numbers of seconds. Sizes are integers (bytes) or strings with
``B``, ``KB``, ``KiB``, ``MB``, ``MiB``.

Errors are :class:`ScenarioError`: the message names the file, the key path
(``workload[2].weight``; arrays count from 0) and what was expected, such as
``quick.toml: workload[2].weight: expected a positive number, got -1``.

A pure module: :func:`load_scenario` reads the scenario file and, to check them, PEM key
files it names; nothing else does IO.
"""

from loadgen.runs.scenario.document import parse_redacted, scenario_to_dict
from loadgen.runs.scenario.model import (
    DEFAULT_WORKLOAD,
    MAX_INPUT_BYTES,
    PADDING_KEY,
    Inject,
    KeyRef,
    Load,
    RemoteShards,
    Scenario,
    ScenarioError,
    SearchSettings,
    Stage,
    Target,
    WorkItem,
    default_scenario,
)
from loadgen.runs.scenario.parse import load_scenario, loads_scenario, parse_scenario

__all__ = [
    "DEFAULT_WORKLOAD",
    "MAX_INPUT_BYTES",
    "PADDING_KEY",
    "Inject",
    "KeyRef",
    "Load",
    "RemoteShards",
    "Scenario",
    "ScenarioError",
    "SearchSettings",
    "Stage",
    "Target",
    "WorkItem",
    "default_scenario",
    "load_scenario",
    "loads_scenario",
    "parse_redacted",
    "parse_scenario",
    "scenario_to_dict",
]
