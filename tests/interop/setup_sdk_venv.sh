#!/usr/bin/env bash
# The virtualenv of the real dispatch-py 0.7.1 SDK (requirements-sdk.txt) that the interop tests
# run their endpoint (uvicorn and hypercorn) and client in. Defaults to .venv-sdk at the
# repository root; override with SDK_VENV=/some/path. See setup_venv.sh.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec bash "$here/setup_venv.sh" "${SDK_VENV:-$here/../../.venv-sdk}" "$here/requirements-sdk.txt" \
    "import dispatch, dispatch.fastapi, uvicorn, hypercorn, hypercorn.asyncio, h2"
