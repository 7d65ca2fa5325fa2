"""Regenerate the protobuf and gRPC modules in ``loadgen/pb`` from ``proto/``.

Run from a source checkout with the generator venv (``make proto`` sets it up)::

    .venv-protoc/bin/python loadgen/pb/generate.py          # rewrite loadgen/pb/*_pb2*.py(i)
    .venv-protoc/bin/python loadgen/pb/generate.py --check  # exit 1 if the committed code is stale

This file needs only the standard library and ``grpcio-tools`` (it never imports
``loadgen``). Two choices make the generated code live beside the real SDK:

* **Own names.** ``proto/dispatch/sdk/v1/*.proto`` is the wire contract, with the
  SDK's package ``dispatch.sdk.v1``. The SDK registers those same file names and
  message names in protobuf's default descriptor pool, and a name can be registered
  only once per process. So loadgen's copies are compiled as the files
  ``loadgen/pb/<name>.proto`` in the package ``loadgen.dispatch.sdk.v1``: the field
  numbers and wire format are unchanged, and the well-known types
  (``google.protobuf.Any``, ``Timestamp``, ``Duration``) stay the ordinary shared
  classes. The only full names that travel on the wire are the gRPC method paths;
  they are rewritten back to ``/dispatch.sdk.v1.DispatchService/Dispatch`` (and
  ``Wait``) and ``/dispatch.sdk.v1.FunctionService/Run``. loadgen never packs its
  own messages into an ``Any``, so no type URL carries the package.
* **An old generator.** grpcio-tools 1.62.3 (protoc 25.1) writes protobuf 4.25
  code, which has no runtime version check and runs on protobuf 4.25.1 up to
  7.x, and gRPC code without a grpcio version check. Newer generators pin the
  runtime to their own version or later.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import sys
import tempfile
from pathlib import Path

PB_DIR = Path(__file__).resolve().parent
PROTO_ROOT = PB_DIR.parent.parent / "proto"
GENERATOR = ("grpcio-tools", "1.62.3")
WIRE_PACKAGE = "dispatch.sdk.v1"
OWN_PACKAGE = "loadgen.dispatch.sdk.v1"
OWN_DIR = "loadgen/pb"
# proto/ subfolders: (folder, package to rename, if any)
SOURCES = ((Path("dispatch/sdk/v1"), WIRE_PACKAGE), (Path("loadgen/v1"), None))


def _own_copy(text: str, package: str | None) -> str:
    """A proto file as loadgen compiles it: imports under ``loadgen/pb/``, its package renamed, and
    references to the wire package's types (in code, not in comments) under loadgen's own name."""
    for subdir, _ in SOURCES:
        text = text.replace(f'import "{subdir}/', f'import "{OWN_DIR}/')
    if package is not None:
        text = re.sub(rf"^package {re.escape(package)};", f"package {OWN_PACKAGE};", text, flags=re.MULTILINE)
    wire = re.compile(rf"(?<![\w.]){re.escape(WIRE_PACKAGE)}\.")
    return "\n".join(
        line if line.lstrip().startswith("//") and package is None else wire.sub(f"{OWN_PACKAGE}.", line)
        for line in text.split("\n")
    )


def _wire_paths(grpc_source: str) -> str:
    """gRPC method paths and service names back to the wire contract's ``dispatch.sdk.v1``."""
    return grpc_source.replace(f"'/{OWN_PACKAGE}.", f"'/{WIRE_PACKAGE}.").replace(
        f"'{OWN_PACKAGE}.", f"'{WIRE_PACKAGE}."
    )


def _check_generator() -> None:
    name, wanted = GENERATOR
    try:
        have = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        have = None
    if have != wanted:
        raise SystemExit(
            f"loadgen/pb is generated with {name}=={wanted} (found {have or 'none'}); "
            "run `make proto`, which sets up .venv-protoc"
        )


def generate() -> dict[str, str]:
    """Run protoc on every proto file; return ``{file name: source}``."""
    _check_generator()
    import grpc_tools
    from grpc_tools import protoc

    include = str(Path(grpc_tools.__file__).parent / "_proto")
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp, "src"), Path(tmp, "out")
        (src / OWN_DIR).mkdir(parents=True)
        out.mkdir()
        protos = []
        for subdir, package in SOURCES:
            for path in sorted((PROTO_ROOT / subdir).glob("*.proto")):
                target = src / OWN_DIR / path.name
                target.write_text(_own_copy(path.read_text(), package))
                protos.append(f"{OWN_DIR}/{path.name}")
        args = ["protoc", f"-I{src}", f"-I{include}", f"--python_out={out}", f"--pyi_out={out}",
                f"--grpc_python_out={out}", *protos]  # fmt: skip
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        files = {}
        for path in sorted((out / OWN_DIR).iterdir()):
            text = path.read_text()
            files[path.name] = _wire_paths(text) if path.name.endswith("_grpc.py") else text
    return files


def stale_files(files: dict[str, str]) -> list[str]:
    """Names of generated files that differ from what is in ``loadgen/pb`` (or are left over there)."""
    stale = [name for name, text in files.items() if _committed(name) != text]
    stale += [p.name for p in sorted(PB_DIR.glob("*_pb2*.py*")) if p.name not in files]
    return stale


def _committed(name: str) -> str | None:
    path = PB_DIR / name
    return path.read_text() if path.is_file() else None


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
        if name in files:
            (PB_DIR / name).write_text(files[name])
            print(f"wrote loadgen/pb/{name}")
        else:
            (PB_DIR / name).unlink()
            print(f"removed loadgen/pb/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
