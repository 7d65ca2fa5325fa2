#!/usr/bin/env bash
# The virtualenv of dispatch-py 0.8.0 (requirements-sdk08.txt): its Connect-over-aiohttp
# dispatch.Client, which the interop tests run against loadgen's Connect ingress, and an endpoint
# on it (FastAPI + uvicorn, sdk08_app.py) that loadgen runs load against. Separate from
# .venv-sdk because the two SDKs need other protobuf and transport stacks. Defaults to
# .venv-sdk08 at the repository root; override with SDK08_VENV=/some/path. See setup_venv.sh.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec bash "$here/setup_venv.sh" "${SDK08_VENV:-$here/../../.venv-sdk08}" "$here/requirements-sdk08.txt" \
    "import aiohttp, google.protobuf, dispatch, dispatch.function, dispatch.any, dispatch.fastapi, fastapi, uvicorn; from dispatch import Call, Client"
