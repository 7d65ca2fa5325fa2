"""Regenerate the protobuf and gRPC modules in ``loadgen/pb`` from ``proto/``.

Run from a source checkout with the dev extra installed::

    python -m loadgen.pb.generate          # rewrite loadgen/pb/*_pb2*.py(i)
    python -m loadgen.pb.generate --check  # exit 1 if the committed code is stale

protoc names imports after the proto package (``dispatch.sdk.v1``), which is
the real SDK's import name; the generated imports are rewritten to
``loadgen.pb`` so both can live in one environment. ``proto/loadgen/v1``
holds loadgen's own service (``Shard``), generated beside them.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

PB_DIR = Path(__file__).resolve().parent
PROTO_ROOT = PB_DIR.parent.parent / "proto"
PROTO_SUBDIRS = (Path("dispatch/sdk/v1"), Path("loadgen/v1"))
_IMPORT = re.compile(r"^from (?:dispatch\.sdk|loadgen)\.v1 import ", re.MULTILINE)


def generate() -> dict[str, str]:
    """Run protoc on every proto file; return ``{file name: source}``."""
    import grpc_tools
    from grpc_tools import protoc  # dev dependency, imported on use only

    include = str(Path(grpc_tools.__file__).parent / "_proto")
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for d in PROTO_SUBDIRS for p in (PROTO_ROOT / d).glob("*.proto"))
    with tempfile.TemporaryDirectory() as out:
        args = [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"-I{include}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            *protos,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        files = {}
        for subdir in PROTO_SUBDIRS:
            for path in sorted((Path(out) / subdir).iterdir()):
                files[path.name] = _IMPORT.sub("from loadgen.pb import ", path.read_text())
    return files


def stale_files(files: dict[str, str]) -> list[str]:
    """Names of generated files that differ from what is in ``loadgen/pb``."""
    stale = []
    for name, text in files.items():
        target = PB_DIR / name
        if not target.exists() or target.read_text() != text:
            stale.append(name)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report stale files; exit 1 if any")
    args = parser.parse_args(argv)
    files = generate()
    stale = stale_files(files)
    if args.check:
        for name in stale:
            print(f"stale: loadgen/pb/{name}", file=sys.stderr)
        return 1 if stale else 0
    for name in stale:
        (PB_DIR / name).write_text(files[name])
        print(f"wrote loadgen/pb/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
