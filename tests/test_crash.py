"""A put killed between any two of its steps leaves only orphans, which fsck --repair cleans,
and every object committed before (or by) the killed put stays intact."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cas.fsck import ORPHAN_KINDS, check_store
from cas.store import Store

CRASH_POINTS = ["put:staged", "put:durable", "put:blob-installed", "put:alias-made", "put:before-commit",
                "put:committed"]

PUT_SNIPPET = """
import sys
from cas.store import Store
with Store.open(sys.argv[1]) as store:
    store.put("photos", sys.argv[2], name="new/crashed.bin")
"""


def put_in_subprocess(store_root: Path, source: Path, crash_at: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PUT_SNIPPET, str(store_root), str(source)],
        env={**os.environ, "ASSETFS_CRASH_AT": crash_at}, capture_output=True, timeout=60,
    )


@pytest.mark.parametrize("crash_at", CRASH_POINTS)
def test_killed_put_leaves_only_orphans(store_root: Path, tmp_path: Path, crash_at: str) -> None:
    kept_source = tmp_path / "kept.bin"
    kept_source.write_bytes(b"committed before the crash" * 1000)
    new_source = tmp_path / "new.bin"
    new_source.write_bytes(os.urandom(300_000))
    with Store.open(store_root) as store:
        kept = store.put("photos", kept_source, name="kept.bin").object

    result = put_in_subprocess(store_root, new_source, crash_at)
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()

    with Store.open(store_root) as store:
        report = check_store(store, orphan_grace=0)
        assert all(problem.kind in ORPHAN_KINDS for problem in report.problems), [p.describe() for p in report.problems]
        if crash_at in ("put:staged", "put:durable", "put:blob-installed", "put:alias-made", "put:before-commit"):
            assert report.problems, "the killed put left files behind, and fsck must see them"

        repaired = check_store(store, repair=True, orphan_grace=0)
        assert repaired.clean
        assert check_store(store, orphan_grace=0, verify_content=True).problems == []

        assert store.open_object(kept.id).read() == kept_source.read_bytes()
        committed = [info for info in store.list("photos") if "new/crashed.bin" in info.names]
        if crash_at == "put:committed":
            assert len(committed) == 1
            assert store.open_object(committed[0].id).read() == new_source.read_bytes()
        else:
            assert committed == []
        assert list(store.tree.tmp.iterdir()) == []

        again = store.put("photos", new_source, name="new/crashed.bin")
        assert store.open_object(again.object.id).read() == new_source.read_bytes()
        assert check_store(store, orphan_grace=0, verify_content=True).problems == []


def test_young_orphans_are_left_alone(store_root: Path, tmp_path: Path) -> None:
    """Files of a put in flight have no row yet: within the orphan grace fsck must not touch them."""
    source = tmp_path / "new.bin"
    source.write_bytes(os.urandom(10_000))
    assert put_in_subprocess(store_root, source, "put:before-commit").returncode == -signal.SIGKILL
    with Store.open(store_root) as store:
        report = check_store(store, repair=True, orphan_grace=3600)
        assert report.problems == []
        assert any(store.tree.blobs.rglob("*"))
        assert check_store(store, orphan_grace=0).problems != []
