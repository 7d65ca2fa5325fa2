#!/usr/bin/env bash
# The drop-in venvs: one process, the real SDK and loadgen (this checkout, editable) in one venv.
#   .venv-dropin    dispatch-py 0.7.1 + FastAPI + loadgen (requirements-dropin.txt), which runs the
#                   SDK's own test suite with loadgen in place of dispatch.test
#   .venv-dropin08  dispatch-py 0.8.0 + FastAPI + loadgen (requirements-dropin08.txt)
# Override the paths with DROPIN_VENV / DROPIN08_VENV. Idempotent and fast when both are healthy
# (see tests/interop/setup_venv.sh).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
setup="$here/../interop/setup_venv.sh"
from_here="import pathlib, loadgen; assert pathlib.Path(loadgen.__file__).resolve().parent == pathlib.Path('$root/loadgen').resolve(), loadgen.__file__"
bash "$setup" "${DROPIN_VENV:-$root/.venv-dropin}" "$here/requirements-dropin.txt" \
    "import dispatch.fastapi, dispatch.test, fastapi, pytest; $from_here" "$root"
bash "$setup" "${DROPIN08_VENV:-$root/.venv-dropin08}" "$here/requirements-dropin08.txt" \
    "import dispatch.fastapi, dispatch.any, fastapi, pytest; $from_here" "$root"
