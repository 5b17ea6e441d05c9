"""`assetfs mount --gc` runs the collector inside the mount's daemon."""

import time
from pathlib import Path

import mounting
from conftest import run_cli
from gc_helpers import configure

GC_CONFIG = '[gc]\nmin_age = "0s"\ninterval = "1s"\n\n[bucket_defaults]\ngrace = "1h"\n'
WAIT = 30.0  # a bound on waiting for the collector, not a speed requirement


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"not within {WAIT}s: {what}"
        time.sleep(0.2)


def test_mount_with_gc_trashes_unreferenced_objects_and_keeps_named_ones(store_root: Path, tmp_path: Path) -> None:
    configure(store_root, GC_CONFIG)
    mount = mounting.start_mount(store_root, tmp_path / "mnt", tmp_path / "mount.log", "--gc")
    try:
        (mount.path / "photos").mkdir()
        (mount.path / "photos" / "kept.txt").write_bytes(b"named through the mount")
        unnamed = tmp_path / "unnamed.txt"
        unnamed.write_bytes(b"put without a name")
        object_id = run_cli(store_root, "put", "photos", str(unnamed), "--no-name").stdout.split()[0].decode()

        trashed = mount.path / ".trash" / "photos" / object_id
        wait_for(trashed.exists, "the unnamed object in the mount's trash")
        assert not (mount.path / "photos" / object_id).exists()
        assert (mount.path / "photos" / "kept.txt").read_bytes() == b"named through the mount"
        log = mount.log_text()
        assert "garbage collector running" in log and "gc: freed" in log, log
    finally:
        code = mounting.stop_mount(mount)
    mounting.check_after_unmount(mount, code)
    listed = run_cli(store_root, "ls", "photos").stdout.decode()
    assert "kept.txt" in listed and object_id not in listed
