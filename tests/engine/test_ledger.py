"""The ledger's memory: a memfd (no file to leave behind), or a file named by pid that the next
ledger removes once its process is gone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from loadgen.engine.ledger import Ledger, remove_stale_files


def test_the_ledger_lives_in_a_memfd_and_a_second_mapping_sees_the_same_rows() -> None:
    ledger = Ledger(2)
    try:
        assert ledger.path == "" and ledger.handle.fd is not None
        fd = os.dup(ledger.handle.fd)
        other = Ledger(2, type(ledger.handle)(fd, ""))
        other.add_accepted(1, 5)
        other.add_ended(1, "cancelled", 2)
        assert ledger.outcomes(1) == (5, (0, 0, 0, 2)) and ledger.row(1) == (5, 2)
        other.close()
    finally:
        ledger.close()


def test_stale_ledger_files_of_dead_processes_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = tmp_path / f"loadgen-ledger-{int(dead.stdout)}-abc"
    alive = tmp_path / f"loadgen-ledger-{os.getpid()}-def"
    unrelated = tmp_path / "loadgen-ledger-old8char"
    for path in (gone, alive, unrelated):
        path.write_bytes(b"\0" * 8)
    assert remove_stale_files(str(tmp_path)) == [gone.name]
    assert alive.exists() and unrelated.exists() and not gone.exists()
