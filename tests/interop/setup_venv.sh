#!/usr/bin/env bash
# setup_venv.sh VENV REQUIREMENTS IMPORTS [PROJECT]: create (or repair) a CPython 3.11 virtualenv at
# VENV holding exactly the pins of REQUIREMENTS (installed with --no-deps), in which the Python
# statement IMPORTS runs. With PROJECT (a source folder), that project is installed too, editable and
# with --no-deps (the pins must hold its dependencies and setuptools); IMPORTS should then check that
# it imports from there. The SDK venvs of the interop tests, the drop-in venvs and the code
# generator's venv are made with it.
#
# Idempotent: a healthy venv (3.11, every `name==version` pin at that version, IMPORTS works)
# exits at once; one that only lacks some pins gets them installed in place; one still broken
# after that, or missing, is recreated.
#
# Pins are installed from a wheelhouse, LOADGEN_WHEELHOUSE (default ~/.cache/loadgen/wheels,
# shared by every checkout on the machine): what it lacks is fetched from the package index with
# `pip wheel` first. A fresh venv from a full wheelhouse takes seconds and no network.
set -euo pipefail

venv="$1"
requirements="$2"
imports="$3"
project="${4:-}"
name="$(basename "$requirements")"

# argv[1]: the requirements file. Every `name==version` line must be installed at that version.
check='
import re, sys, importlib.metadata as md
exec(sys.argv[2])
assert sys.version_info[:2] == (3, 11), sys.version
for line in open(sys.argv[1]):
    m = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line)
    if m:
        have = md.version(m.group(1))
        assert have == m.group(2), f"{m.group(1)} {have} != {m.group(2)}"
'

healthy() {
    [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "$check" "$requirements" "$imports" >/dev/null 2>&1
}

wheelhouse="${LOADGEN_WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/loadgen/wheels}"

pip_install() {
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-compile "$@"
}

install_pins() {
    mkdir -p "$wheelhouse"
    if ! pip_install --no-index --find-links "$wheelhouse" -r "$requirements" 2>/dev/null; then
        echo "setup_venv.sh ($name): fetching the wheels $wheelhouse lacks" >&2
        # Into a folder of our own first, then renamed in: checkouts sharing the wheelhouse never see half a file.
        local fresh
        fresh="$(mktemp -d "$wheelhouse/.incoming.XXXXXX")"
        if ! "$venv/bin/python" -m pip wheel --quiet --disable-pip-version-check --no-deps \
            --find-links "$wheelhouse" -w "$fresh" -r "$requirements"; then
            rm -rf -- "$fresh"
            return 1
        fi
        find "$fresh" -maxdepth 1 -name '*.whl' -exec mv -f {} "$wheelhouse/" \;
        rm -rf -- "$fresh"
        pip_install --no-index --find-links "$wheelhouse" -r "$requirements" || return 1
    fi
    if [ -n "$project" ]; then
        pip_install --no-build-isolation -e "$project" || return 1
    fi
}

if healthy; then
    exit 0
fi

# An existing 3.11 venv that is only missing (or has other versions of) some pins: install them in place.
if [ -x "$venv/bin/python" ] \
    && "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' >/dev/null 2>&1; then
    echo "setup_venv.sh ($name): $venv lacks some pins of $(basename "$requirements"), installing them" >&2
    if install_pins && healthy; then
        echo "setup_venv.sh ($name): ready: $venv" >&2
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
    echo "setup_venv.sh ($name): need CPython 3.11 (python3.11, or python3 being 3.11)" >&2
    exit 1
fi

if [ -e "$venv" ]; then
    echo "setup_venv.sh ($name): $venv is missing or broken, recreating it" >&2
    rm -rf -- "$venv"
fi
echo "setup_venv.sh ($name): creating $venv with $("$python" -c 'import sys; print(sys.executable)')" >&2
"$python" -m venv "$venv"
printf '# created by tests/interop/setup_venv.sh\n*\n' >"$venv/.gitignore"
install_pins

if ! "$venv/bin/python" -c "$check" "$requirements" "$imports"; then
    echo "setup_venv.sh ($name): $venv was created but the import/pin check still fails" >&2
    exit 1
fi
echo "setup_venv.sh ($name): ready: $venv" >&2
