#!/usr/bin/env bash
# The code generator's venv (requirements-protoc.txt): .venv-protoc at the repository root, or
# PROTOC_VENV=/some/path. Idempotent (see tests/interop/setup_venv.sh).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec bash "$here/../tests/interop/setup_venv.sh" "${PROTOC_VENV:-$here/../.venv-protoc}" \
    "$here/requirements-protoc.txt" "import grpc_tools.protoc"
