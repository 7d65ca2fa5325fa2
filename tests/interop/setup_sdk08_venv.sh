#!/usr/bin/env bash
# Create the virtualenv holding dispatch-py 0.8.0 (pinned in requirements-sdk08.txt), whose
# Connect-over-aiohttp dispatch.Client the interop tests run against loadgen's Connect ingress.
# It is separate from .venv-sdk (dispatch-py 0.7.1) because the two SDKs need other protobuf
# and transport stacks.
#
# Idempotent: when the venv exists, runs CPython 3.11, holds every pin of requirements-sdk08.txt
# at its exact version and `import dispatch, aiohttp` works, it exits at once. A venv that only
# lacks some pins gets them pip-installed in place; one still broken after that, or missing, is
# (re)created. The location defaults to .venv-sdk08 at the repository root; override it with
# SDK08_VENV=/some/path.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${SDK08_VENV:-$root/.venv-sdk08}"
requirements="$here/requirements-sdk08.txt"

# argv[1]: the requirements file. Every `name==version` line must be installed at that version.
check='
import re, sys, importlib.metadata as md
import aiohttp, google.protobuf
import dispatch, dispatch.function, dispatch.any
from dispatch import Call, Client
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

if [ -x "$venv/bin/python" ] \
    && "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' >/dev/null 2>&1; then
    echo "setup_sdk08_venv.sh: $venv lacks some pins of $(basename "$requirements"), installing them" >&2
    if install_pins && healthy; then
        echo "setup_sdk08_venv.sh: ready: $venv" >&2
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
    echo "setup_sdk08_venv.sh: need CPython 3.11 (python3.11, or python3 being 3.11)" >&2
    exit 1
fi

if [ -e "$venv" ]; then
    echo "setup_sdk08_venv.sh: $venv is missing or broken, recreating it" >&2
    rm -rf -- "$venv"
fi
echo "setup_sdk08_venv.sh: creating $venv with $("$python" -c 'import sys; print(sys.executable)')" >&2
"$python" -m venv "$venv"
# Keep git from listing the venv (the repository's .gitignore predates it), as CPython 3.13's venv does.
printf '# created by tests/interop/setup_sdk08_venv.sh\n*\n' >"$venv/.gitignore"
install_pins

if ! "$venv/bin/python" -c "$check" "$requirements"; then
    echo "setup_sdk08_venv.sh: $venv was created but the import/pin check still fails" >&2
    exit 1
fi
echo "setup_sdk08_venv.sh: ready: $venv (dispatch-py 0.8.0)" >&2
