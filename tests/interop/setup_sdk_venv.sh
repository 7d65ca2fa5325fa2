#!/usr/bin/env bash
# Create the virtualenv holding the real dispatch-py SDK (pinned in
# requirements-sdk.txt) that the interop tests run their endpoint and client in.
#
# Idempotent: when the venv exists and `import dispatch` works (with the pinned
# version, on CPython 3.11) it exits at once. A missing or broken venv is
# (re)created. The location defaults to .venv-sdk at the repository root;
# override it with SDK_VENV=/some/path.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${SDK_VENV:-$root/.venv-sdk}"
requirements="$here/requirements-sdk.txt"
want_version="$(sed -n 's/^dispatch-py==\([^[:space:]]*\).*/\1/p' "$requirements")"

check='
import sys, importlib.metadata as md
import dispatch, dispatch.fastapi, uvicorn
assert sys.version_info[:2] == (3, 11), sys.version
assert md.version("dispatch-py") == sys.argv[1], md.version("dispatch-py")
'

if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "$check" "$want_version" >/dev/null 2>&1; then
    exit 0
fi

python=""
for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 \
        && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' >/dev/null 2>&1; then
        python="$candidate"
        break
    fi
done
if [ -z "$python" ]; then
    echo "setup_sdk_venv.sh: need CPython 3.11 (python3.11, or python3 being 3.11)" >&2
    exit 1
fi

if [ -e "$venv" ]; then
    echo "setup_sdk_venv.sh: $venv is missing or broken, recreating it" >&2
    rm -rf -- "$venv"
fi
echo "setup_sdk_venv.sh: creating $venv with $("$python" -c 'import sys; print(sys.executable)')" >&2
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$requirements"

if ! "$venv/bin/python" -c "$check" "$want_version"; then
    echo "setup_sdk_venv.sh: $venv was created but 'import dispatch' still fails" >&2
    exit 1
fi
echo "setup_sdk_venv.sh: ready: $venv (dispatch-py $want_version)" >&2
