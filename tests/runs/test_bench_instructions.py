"""The instruction-count benchmark's arithmetic: callgrind's costs by library, start-up cancelled out."""

from __future__ import annotations

import pytest

from loadgen.bench.instructions import Count, by_group, group_of, per_call, self_by_object

# A callgrind output file in its own format: compressed names, a call's inclusive cost after calls=.
CALLGRIND = """\
# callgrind format
version: 1
creator: callgrind-3.19.0
positions: line
events: Ir
summary: 6150
ob=(1) /v/site-packages/nacl/_sodium.abi3.so
fl=(1) ed25519_ref10.c
fn=(1) crypto_sign
10 2000
+2 1000
ob=(2) /usr/lib/libpython3.11.so.1.0
fl=(2) ceval.c
fn=(2) _PyEval_EvalFrameDefault
5 1500
cob=(1)
cfi=(1)
cfn=(1)
calls=1 10
7 3000
8 500
ob=(3) /v/site-packages/google/_upb/_message.abi3.so
fl=(3) ???
fn=(3) upb_decode
0 400
ob=(1)
fl=(1)
fn=(4) sc25519_reduce
20 100
ob=(4) /opt/unknown.so
fn=(5) something
0 50
ob=(5) /usr/lib/x86_64-linux-gnu/libcrypto.so.3
fn=(6) sha512_block
0 600
totals: 6150
"""


def test_self_costs_are_summed_by_the_library_they_ran_in() -> None:
    lines = CALLGRIND.splitlines()
    by_object = self_by_object(lines)
    assert sum(by_object.values()) == 6150  # the file's totals: the call's inclusive 3,000 is not counted
    assert by_object["/v/site-packages/nacl/_sodium.abi3.so"] == 3100  # (1) reused after its definition
    assert by_group(lines) == {
        "libsodium (Ed25519, SHA-512)": 3100,
        "Python interpreter": 2000,
        "protobuf (upb)": 400,
        "OpenSSL (hashlib)": 600,
        "other": 50,
    }
    assert group_of("/usr/lib/x86_64-linux-gnu/libc.so.6") == "libc"


def test_a_call_costs_the_long_run_less_the_short_one_over_the_calls_it_added() -> None:
    short = Count(1_000, 900_000_000, {"Python interpreter": 500_000_000, "libc": 1_000})
    long = Count(4_000, 2_400_000_000, {"Python interpreter": 1_400_000_000, "uvloop": 3_000})
    assert per_call(short, long) == {"total": 500_000, "Python interpreter": 300_000, "libc": -1 / 3, "uvloop": 1}
    with pytest.raises(RuntimeError, match="no difference"):
        per_call(long, short)
