"""Many writers on one name (docs/concurrency.md, "Many writers"): a commit that would replace
a version its writer never saw keeps the newer one on the name and becomes a conflict copy;
a mount sees what another writer committed; a name removed or replaced lets go of its object
at once (into the trash, with its name); the journal takes any mtime and a file in it that is
no entry never stops a mount. Real mounts, both catalogs (issue 11, findings 1–3, 5, 6)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from cas.store import Store
from conftest import run_cli
from mounting import Mount, start_mount, stop_mount, unmount

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None,
                       reason="needs /dev/fuse and fusermount3"),
]

HELD = {"ASSETFS_WRITEBEHIND_GATHER_S": "3600"}  # closed files wait in the journal until fsync or unmount
ATTR_TIMEOUT_S = 1.0  # how long a mount may show a name's attributes from before (docs/fuse.md)
LET_GO_LIMIT_S = 15.0  # a bound for the background reference check, not a speed assertion


def kill(mount: Mount) -> None:
    os.kill(mount.process.pid, signal.SIGKILL)
    mount.process.wait(timeout=30)
    unmount(mount.path)


def names_in(store_root: Path, bucket: str) -> dict[str, bytes]:
    """Every name of the bucket's live objects → its content."""
    with Store.open(store_root) as store:
        return {name: store.open_object(info.id).read() for info in store.list(bucket) for name in info.names}


def conflict_copies(found: dict[str, bytes], name: str) -> list[bytes]:
    stem = name.rsplit(".", 1)[0]
    return [content for path, content in found.items() if path.startswith(f"{stem} (conflict ")]


def put_named(store_root: Path, tmp_path: Path, bucket: str, name: str, data: bytes) -> str:
    source = tmp_path / f"put-{time.monotonic_ns()}"
    source.write_bytes(data)
    return run_cli(store_root, "put", bucket, str(source), "--name", name).stdout.decode().split()[0]


def trashed(store_root: Path, bucket: str) -> dict[str, dict]:
    listing = run_cli(store_root, "trash", "ls", bucket, "--json").stdout.decode().splitlines()
    return {record["id"]: record for record in map(json.loads, listing)}


def wait_until_trashed(store_root: Path, bucket: str, object_id: str) -> dict:
    deadline = time.monotonic() + LET_GO_LIMIT_S
    while object_id not in (found := trashed(store_root, bucket)):
        assert time.monotonic() < deadline, f"{object_id} did not reach the trash"
        time.sleep(0.2)
    return found[object_id]


def test_a_killed_mounts_old_close_does_not_replace_a_newer_put(store_root: Path, tmp_path: Path) -> None:
    put_named(store_root, tmp_path, "photos", "x.txt", b"version 0")
    mount = start_mount(store_root, tmp_path / "mnt", tmp_path / "mount.log", env=HELD)
    try:
        (mount.path / "photos" / "x.txt").write_bytes(b"version 1, closed in the mount")
        (mount.path / "photos" / "new.txt").write_bytes(b"a new file, closed in the mount")
    finally:
        kill(mount)
    put_named(store_root, tmp_path, "photos", "x.txt", b"version 2, put after the kill")

    again = start_mount(store_root, tmp_path / "mnt", tmp_path / "mount2.log")
    try:
        assert (again.path / "photos" / "x.txt").read_bytes() == b"version 2, put after the kill"
        assert (again.path / "photos" / "new.txt").read_bytes() == b"a new file, closed in the mount"
    finally:
        assert stop_mount(again) == 0
    found = names_in(store_root, "photos")
    assert found["x.txt"] == b"version 2, put after the kill"
    assert conflict_copies(found, "x.txt") == [b"version 1, closed in the mount"]
    assert "conflict" in again.log_text()
    run_cli(store_root, "fsck")  # clean: exits 0


def test_two_mounts_see_each_others_commits_and_a_stale_write_becomes_a_conflict_copy(store_root: Path,
                                                                                      tmp_path: Path) -> None:
    a = start_mount(store_root, tmp_path / "a", tmp_path / "a.log")
    try:
        b = start_mount(store_root, tmp_path / "b", tmp_path / "b.log")
        try:
            (a.path / "docs").mkdir()
            with open(a.path / "docs" / "x.txt", "wb") as writer:
                writer.write(b"from A")
                writer.flush()
                os.fsync(writer.fileno())
            time.sleep(ATTR_TIMEOUT_S + 0.2)
            with open(b.path / "docs" / "x.txt", "wb") as writer:
                writer.write(b"from B, longer")
                writer.flush()
                os.fsync(writer.fileno())
            time.sleep(ATTR_TIMEOUT_S + 0.2)
            # within A's 2 s linger of its own commit: A still sees B's newer version
            assert (a.path / "docs" / "x.txt").read_bytes() == b"from B, longer"

            with open(a.path / "docs" / "x.txt", "ab") as appender:  # an append applies to B's version
                appender.write(b" + appended by A")
            a.settle()
            time.sleep(ATTR_TIMEOUT_S + 0.2)
            assert (b.path / "docs" / "x.txt").read_bytes() == b"from B, longer + appended by A"

            with open(a.path / "docs" / "x.txt", "r+b") as patcher:  # opened before B's next write...
                with open(b.path / "docs" / "x.txt", "wb") as writer:
                    writer.write(b"B's newest")
                    writer.flush()
                    os.fsync(writer.fileno())
                patcher.write(b"P")  # ...so this patch is of a version that is no longer the name's
            a.settle()
        finally:
            assert stop_mount(b) == 0
    finally:
        assert stop_mount(a) == 0
    found = names_in(store_root, "docs")
    assert found["x.txt"] == b"B's newest"
    assert conflict_copies(found, "x.txt") == [b"Prom B, longer + appended by A"]
    assert "Traceback" not in a.log_text() + b.log_text()


def test_a_mount_sees_another_writers_commit_that_keeps_the_size_and_the_mtime(store_root: Path,
                                                                             tmp_path: Path) -> None:
    """The kernel keeps a file's pages across opens and drops them only when it sees the size
    or the mtime change: a commit that changes neither (`cp -p` of a same-sized file) must
    still reach the next open in another mount."""
    a = start_mount(store_root, tmp_path / "a", tmp_path / "a.log")
    try:
        b = start_mount(store_root, tmp_path / "b", tmp_path / "b.log")
        try:
            (a.path / "docs").mkdir()
            path_a, path_b = a.path / "docs" / "x.txt", b.path / "docs" / "x.txt"
            for content in (b"first version", b"other version"):  # the same size...
                with open(path_a, "wb") as writer:
                    writer.write(content)
                os.utime(path_a, ns=(1_600_000_000 * 10**9, 1_600_000_000 * 10**9))  # ...and mtime
                a.settle()
                time.sleep(ATTR_TIMEOUT_S + 0.2)
                assert path_b.read_bytes() == content
                assert path_b.stat().st_mtime_ns == 1_600_000_000 * 10**9
        finally:
            assert stop_mount(b) == 0
    finally:
        assert stop_mount(a) == 0


def test_a_commit_keeps_its_close_mtime_when_the_file_was_renamed_after_the_close(store_root: Path,
                                                                                 tmp_path: Path) -> None:
    """Only an mtime set explicitly after the close (rsync's utimens) wins over the close's; a
    rename by another mount in between moves the ctime, not the mtime. Mount B reads the file,
    renames it while A's 1-byte patch waits in A's journal, and sees the patch once A commits."""
    a = start_mount(store_root, tmp_path / "a", tmp_path / "a.log", env=HELD)
    try:
        b = start_mount(store_root, tmp_path / "b", tmp_path / "b.log")
        try:
            (a.path / "docs").mkdir()
            (a.path / "docs" / "x.txt").write_bytes(b"a.txt#1")
            a.settle()
            time.sleep(ATTR_TIMEOUT_S + 0.2)
            assert (b.path / "docs" / "x.txt").read_bytes() == b"a.txt#1"
            before = (b.path / "docs" / "x.txt").stat().st_mtime_ns
            time.sleep(0.05)
            with open(a.path / "docs" / "x.txt", "r+b") as patcher:
                patcher.write(b"b")
            patched_mtime = (a.path / "docs" / "x.txt").stat().st_mtime_ns
            assert patched_mtime > before
            os.rename(b.path / "docs" / "x.txt", b.path / "docs" / "y.txt")  # after A's close
            a.settle()
            time.sleep(ATTR_TIMEOUT_S + 0.2)
            assert (b.path / "docs" / "y.txt").read_bytes() == b"b.txt#1"
            assert (b.path / "docs" / "y.txt").stat().st_mtime_ns == patched_mtime

            os.utime(b.path / "docs" / "y.txt", ns=(10**18, 10**18))  # an explicit set after a close wins
            time.sleep(ATTR_TIMEOUT_S + 0.2)
            with open(a.path / "docs" / "y.txt", "r+b") as patcher:
                patcher.write(b"c")
                closed_mtime = os.fstat(patcher.fileno()).st_mtime_ns
            os.utime(b.path / "docs" / "y.txt", ns=(10**18 + 1000, 10**18 + 1000))
            a.settle()
            time.sleep(ATTR_TIMEOUT_S + 0.2)
            assert (b.path / "docs" / "y.txt").read_bytes() == b"c.txt#1"
            assert closed_mtime != 10**18 + 1000
            assert (b.path / "docs" / "y.txt").stat().st_mtime_ns == 10**18 + 1000
        finally:
            assert stop_mount(b) == 0
    finally:
        assert stop_mount(a) == 0
    assert "Traceback" not in a.log_text() + b.log_text()


def test_the_journal_takes_mtimes_before_1970_and_a_file_that_is_no_entry_never_blocks_a_mount(
        store_root: Path, tmp_path: Path) -> None:
    source = tmp_path / "old.txt"
    source.write_bytes(b"from the sixties")
    os.utime(source, (-1e8, -1e8))  # 1966
    mount = start_mount(store_root, tmp_path / "mnt", tmp_path / "mount.log", env=HELD)
    try:
        (mount.path / "photos").mkdir()
        shutil.copy2(source, mount.path / "photos" / "old.txt")  # cp -p
        [journal] = [path for path in (store_root / "tmp").iterdir() if path.name.startswith("closed-")]
        (journal / "stray file").write_bytes(b"not written by assetfs")
    finally:
        kill(mount)

    again = start_mount(store_root, tmp_path / "mnt", tmp_path / "mount2.log")
    try:
        copied = again.path / "photos" / "old.txt"
        assert copied.read_bytes() == b"from the sixties"
        assert copied.stat().st_mtime == pytest.approx(-1e8)
    finally:
        assert stop_mount(again) == 0
    assert "stray file" in again.log_text()

    report = run_cli(store_root, "fsck", check=None)
    assert report.returncode == 1 and "unreadable_closed" in report.stdout.decode()
    repair = run_cli(store_root, "fsck", "--repair", check=None)
    found = names_in(store_root, "lost-found")
    assert found, repair.stdout.decode() + repair.stderr.decode()
    assert [content for name, content in found.items() if name.endswith("/stray file")] == [b"not written by assetfs"]
    run_cli(store_root, "fsck")  # clean: exits 0
    assert [path.name for path in (store_root / "tmp").iterdir()] == []


@pytest.mark.parametrize("commit_first", [False, True], ids=["renamed-before-commit", "renamed-after-commit"])
def test_an_objects_file_name_and_type_follow_a_rename_of_its_file(store_root: Path, tmp_path: Path,
                                                                   commit_first: bool) -> None:
    mount = start_mount(store_root, tmp_path / "mnt", tmp_path / "mount.log", env=HELD)
    try:
        (mount.path / "photos").mkdir()
        temporary = mount.path / "photos" / ".style.css.vTGY1S"  # as rsync or an editor's atomic save writes it
        with open(temporary, "wb") as writer:
            writer.write(b"body { color: red }\n")
            if commit_first:
                writer.flush()
                os.fsync(writer.fileno())
        os.rename(temporary, mount.path / "photos" / "style.css")
        mount.settle()
        assert (mount.path / "photos" / "style.css").read_bytes() == b"body { color: red }\n"
    finally:
        assert stop_mount(mount) == 0
    with Store.open(store_root) as store:
        [info] = list(store.list("photos"))
    assert info.names == ["style.css"] and info.filename == "style.css"
    assert info.content_type == "text/css"
    aliases = [path.name for path in (store_root / "objects" / "photos").rglob("*") if path.is_file()]
    assert aliases == ["style.css"]
    run_cli(store_root, "fsck")  # clean: exits 0


def test_removing_or_replacing_a_last_name_trashes_the_object_within_seconds(store_root: Path,
                                                                              tmp_path: Path) -> None:
    mount = start_mount(store_root, tmp_path / "mnt", tmp_path / "mount.log")
    try:
        (mount.path / "photos").mkdir()
        (mount.path / "photos" / "gone.txt").write_bytes(b"removed in the mount")
        (mount.path / "photos" / "kept.txt").write_bytes(b"held by an application")
        (mount.path / "photos" / "over.txt").write_bytes(b"replaced by a put")
        mount.settle()
        ids = _ids(store_root)
        run_cli(store_root, "hold", "add", ids["kept.txt"], "app")
        os.unlink(mount.path / "photos" / "gone.txt")
        os.unlink(mount.path / "photos" / "kept.txt")
        wait_until_trashed(store_root, "photos", ids["gone.txt"])
    finally:
        assert stop_mount(mount) == 0
    put_named(store_root, tmp_path, "photos", "over.txt", b"the put's version")
    wait_until_trashed(store_root, "photos", ids["over.txt"])
    assert ids["kept.txt"] not in trashed(store_root, "photos")  # a hold still refers to it

    run_cli(store_root, "restore", ids["gone.txt"])
    assert names_in(store_root, "photos")["gone.txt"] == b"removed in the mount"  # back with its name


def _ids(store_root: Path) -> dict[str, str]:
    with Store.open(store_root) as store:
        return {name: info.id for info in store.list("photos") for name in info.names}


def test_a_file_removed_before_its_commit_goes_to_the_trash_under_its_name(store_root: Path, tmp_path: Path) -> None:
    mount = start_mount(store_root, tmp_path / "mnt", tmp_path / "mount.log", env=HELD)
    try:
        (mount.path / "photos").mkdir()
        (mount.path / "photos" / "brief.txt").write_bytes(b"closed, then removed before its commit")
        os.unlink(mount.path / "photos" / "brief.txt")
        mount.settle()
    finally:
        assert stop_mount(mount) == 0
    [record] = trashed(store_root, "photos").values()
    run_cli(store_root, "restore", record["id"])
    assert names_in(store_root, "photos") == {"brief.txt": b"closed, then removed before its commit"}


def test_a_file_whose_node_another_mount_deleted_before_its_commit_goes_to_the_trash(store_root: Path,
                                                                                     tmp_path: Path) -> None:
    """A closes a new file (held in its journal); B removes the name and, once it ends, deletes
    the nameless node: A's commit then has no node, yet the closed version is kept (found by
    the model test: it was lost)."""
    a = start_mount(store_root, tmp_path / "a", tmp_path / "a.log", env=HELD)
    try:
        (a.path / "photos").mkdir()
        (a.path / "photos" / "x.txt").write_bytes(b"closed in A, not committed")
        b = start_mount(store_root, tmp_path / "b", tmp_path / "b.log")
        try:
            os.unlink(b.path / "photos" / "x.txt")
        finally:
            assert stop_mount(b) == 0
        with Store.open(store_root) as store:
            nodes = store.catalog.run(lambda tx: tx.all("select id from nodes where kind = 'file'"), write=False)
        assert nodes == [], "B left the node: this test no longer covers a deleted node"
        a.settle()
    finally:
        assert stop_mount(a) == 0
    [record] = trashed(store_root, "photos").values()
    run_cli(store_root, "restore", record["id"])
    with Store.open(store_root) as store:
        assert store.open_object(record["id"]).read() == b"closed in A, not committed"
