#!/usr/bin/env bash
# Create the virtualenv holding the real dispatch-py SDK (pinned in
# requirements-sdk.txt) that the interop tests run their endpoint and client in.
#
# Idempotent: when the venv exists, runs CPython 3.11, holds every pin of
# requirements-sdk.txt at its exact version and `import dispatch, ...,
# hypercorn` works, it exits at once. A venv that only lacks some pins (e.g.
# one made before hypercorn was added) gets them pip-installed in place; one
# that is still broken after that, or missing, is (re)created. The location
# defaults to .venv-sdk at the repository root; override it with
# SDK_VENV=/some/path.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${SDK_VENV:-$root/.venv-sdk}"
requirements="$here/requirements-sdk.txt"

# argv[1]: the requirements file. Every `name==version` line must be installed at that version.
check='
import re, sys, importlib.metadata as md
import dispatch, dispatch.fastapi, uvicorn, hypercorn, hypercorn.asyncio, h2
assert sys.version_info[:2] == (3, 11), sys.version
for line in open(sys.argv[1]):
    m = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line)
    if m:
        have = md.version(m.group(1))
        assert have == m.group(2), f"{m.group(1)} {have} != {m.group(2)}"
'

healthy() {
    [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "$check" "$requirements" >/dev/null 2>&1
}

install_pins() {
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$requirements"
}

if healthy; then
    exit 0
fi

# An existing 3.11 venv that is only missing (or has other versions of) some pins: install them in place.
if [ -x "$venv/bin/python" ] \
    && "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' >/dev/null 2>&1; then
    echo "setup_sdk_venv.sh: $venv lacks some pins of $(basename "$requirements"), installing them" >&2
    if install_pins && healthy; then
        echo "setup_sdk_venv.sh: ready: $venv" >&2
        exit 0
    fi
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
install_pins

if ! "$venv/bin/python" -c "$check" "$requirements"; then
    echo "setup_sdk_venv.sh: $venv was created but the import/pin check still fails" >&2
    exit 1
fi
echo "setup_sdk_venv.sh: ready: $venv" >&2
