"""The collector killed (SIGKILL) at each of its crash points, and at random moments: the next
pass and `fsck --repair` end clean, and no live object is lost."""

import io
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from casgc import run_once
from cas.store import Store
from conftest import ASSETFS, run_cli
from gc_helpers import assert_consistent, configure, unused_blobs

CRASH_POINTS = ["gc:trashed", "gc:purged", "gc:purge-committed", "gc:swept", "orphans:blob-removed"]
CONFIG = 'orphan_grace = "0s"\n[gc]\nmin_age = "0s"\nbatch_size = 3\n\n[bucket_defaults]\ngrace = "0s"\n'


def populate(store_root: Path, objects: int = 8) -> dict[str, bytes]:
    """Named objects (to keep), unreferenced and trashed ones (to collect), and an orphan blob;
    returns the kept objects' contents by id."""
    configure(store_root, CONFIG)
    kept = {}
    with Store.open(store_root) as store:
        for n in range(objects):
            kept[store.put("keep", io.BytesIO(b"kept %d" % n * 100), name=f"k{n}").object.id] = b"kept %d" % n * 100
            store.put("drop", io.BytesIO(b"dropped %d" % n * 100))
            store.delete(store.put("drop", io.BytesIO(b"deleted %d" % n * 100)).object.id)
            store.put("drop", io.BytesIO(b"kept %d" % n * 100))  # shares a blob with a kept object
        orphan = store.tree.blob_path("cd" * 32)
        orphan.parent.mkdir(parents=True, exist_ok=True)
        orphan.write_bytes(b"left by an earlier crash")
    return kept


def check_recovered(store_root: Path, kept: dict[str, bytes]) -> None:
    with Store.open(store_root) as store:
        report = run_once(store)
        assert report.clean, report.lines()
        run_cli(store_root, "fsck", "--repair", "--orphan-grace", "0s")
        assert_consistent(store, orphan_grace=0)
        for object_id, content in kept.items():
            assert store.open_object(object_id).read() == content
        assert sorted(info.id for info in store.list()) == sorted(kept)
        assert list(store.list(deleted=True)) == [] and unused_blobs(store) == []


@pytest.mark.parametrize("crash_at", CRASH_POINTS)
def test_collector_killed_at_a_crash_point(store_root: Path, crash_at: str) -> None:
    kept = populate(store_root)
    result = run_cli(store_root, "gc", env={"ASSETFS_CRASH_AT": crash_at}, check=None)
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()
    check_recovered(store_root, kept)


def test_collector_killed_at_random_moments(store_root: Path) -> None:
    kept = populate(store_root, objects=40)
    chance = random.Random(4)
    for _ in range(4):
        process = subprocess.Popen([ASSETFS, "--store", str(store_root), "gc", "--watch", "--interval", "0s"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(chance.uniform(0.3, 1.0))  # past start-up, somewhere in a pass
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    check_recovered(store_root, kept)


def test_watch_stops_cleanly_on_sigterm(store_root: Path) -> None:
    populate(store_root, objects=2)
    process = subprocess.Popen([ASSETFS, "--store", str(store_root), "gc", "--watch", "--interval", "1h"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = process.stdout.readline().decode()  # the first run has reported
    assert line.startswith("touched:")
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr.decode()
    assert "gc: stopped" in stderr.decode()
