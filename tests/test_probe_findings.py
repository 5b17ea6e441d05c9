"""Problems found by probing the features of 2026-11-29 as an outside user would: a dump
that emptied its target (the live catalog, /dev/null's mode), a repair that linked a damaged
blob over the intact copy, a load that took any bucket name, a pid file written over the
configuration, rsync -X failing into the mount, one store's schema blocking another's. Each
test states what should happen; one still marked `xfail(strict=True)` is a finding not fixed
yet (its fix turns it into an unexpected pass, and the marker must then go)."""

import json
import os
import subprocess
from contextlib import ExitStack
from pathlib import Path


import mounting
from cas.store import Store
from tests.conftest import fresh_database, run_cli


def new_store(tmp_path: Path, name: str, database_url: str | None, made: ExitStack) -> Path:
    """A new, empty store on the same kind of catalog as the fixture's (a fresh database)."""
    url = made.enter_context(fresh_database()) if database_url is not None else None
    root = tmp_path / name
    Store.init(root, database_url=url)[0].close()
    return root


def test_dump_does_not_write_over_the_stores_own_files(store_root: Path, tmp_path: Path) -> None:
    source = tmp_path / "a.txt"
    source.write_text("a")
    run_cli(store_root, "put", "docs", str(source))
    config = store_root / "assetfs.toml"
    before = config.read_bytes()
    result = run_cli(store_root, "dump", "--pause-sweep", "0", "-o", str(config), check=None)
    assert config.read_bytes() == before
    assert result.returncode == 2


def test_dump_over_the_sqlite_catalog_loses_nothing(tmp_path: Path) -> None:
    root = tmp_path / "store"
    Store.init(root)[0].close()
    source = tmp_path / "a.txt"
    source.write_text("a")
    object_id = run_cli(root, "put", "docs", str(source)).stdout.split()[0].decode()
    run_cli(root, "dump", "--pause-sweep", "0", "-o", str(root / "catalog.db"), check=None)
    assert run_cli(root, "cat", object_id, check=None).stdout == b"a"


def test_load_refuses_a_bucket_name_that_leaves_the_store(store_root: Path, database_url: str | None,
                                                          tmp_path: Path) -> None:
    source = tmp_path / "a.txt"
    source.write_text("a")
    run_cli(store_root, "put", "docs", str(source))
    dump = tmp_path / "catalog.jsonl"
    run_cli(store_root, "dump", "--pause-sweep", "0", "-o", str(dump))
    escape = "../../escaped"
    lines = []
    for line in dump.read_text().splitlines():
        record = json.loads(line)
        if record.get("table") == "buckets":
            record["row"]["name"] = escape
        if record.get("table") == "objects":
            record["row"]["bucket"] = escape
        lines.append(json.dumps(record))
    dump.write_text("\n".join(lines) + "\n")
    with ExitStack() as made:
        target = new_store(tmp_path, "target", database_url, made)
        result = run_cli(target, "load", str(dump), check=None)
        run_cli(target, "fsck", "--repair", "--orphan-grace", "0s", check=None)
    assert not (tmp_path / "escaped").exists()
    assert result.returncode == 2


def test_pid_file_does_not_replace_a_file_that_is_no_pid_file(store_root: Path, tmp_path: Path) -> None:
    config = store_root / "assetfs.toml"
    before = config.read_bytes()
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    result = subprocess.run(
        [mounting.ASSETFS, "--store", str(store_root), "mount", "--pid-file", str(config), str(mountpoint)],
        capture_output=True, timeout=60,
    )
    try:
        assert config.exists() and config.read_bytes() == before
        assert result.returncode == 2
    finally:
        if mounting.mounted_at(mountpoint) is not None:
            run_cli(store_root, "umount", str(mountpoint), check=None)
            mounting.unmount(mountpoint)


def test_rsync_xattrs_into_the_mount_twice_succeeds(mounted: "mounting.Mount", tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.txt").write_text("a")
    target = mounted.path / "docs"
    target.mkdir()
    first = subprocess.run(["rsync", "-aX", f"{source}/", f"{target}/"], capture_output=True, timeout=60)
    assert first.returncode == 0, first.stderr
    with open(target / "a.txt", "rb") as committed:  # fsync returns once the commit is done
        os.fsync(committed.fileno())
    mounting.run("getfattr", "-n", "user.assetfs.id", target / "a.txt")  # committed: the attributes are there
    second = subprocess.run(["rsync", "-aX", f"{source}/", f"{target}/"], capture_output=True, timeout=60)
    assert second.returncode == 0, second.stderr.decode()


def test_repairing_an_alias_copy_keeps_the_intact_copy(store: Store, tmp_path: Path) -> None:
    source = tmp_path / "a.txt"
    source.write_bytes(b"precious content")
    put = store.put("docs", source, name="a.txt")
    root = store.root
    store.close()
    copy = tmp_path / "copy"
    subprocess.run(["rsync", "-a", f"{root}/", f"{copy}/"], check=True, timeout=60)  # no -H: aliases are copies
    blob = copy / "blobs" / put.object.hash[:2] / put.object.hash[2:4] / put.object.hash
    blob.chmod(0o644)
    blob.write_bytes(b"damaged content!")  # same size: only the content check sees it
    run_cli(copy, "fsck", "--repair", check=None)
    assert run_cli(copy, "cat", put.object.id, check=None).stdout == b"precious content"


def test_a_second_store_gets_its_own_schema_in_one_database(tmp_path: Path) -> None:
    with fresh_database() as url:
        run_cli(tmp_path / "first", "init", "--database-url", url)
        second = run_cli(tmp_path / "second", "init", "--database-url", url, "--database-schema", "second",
                         check=None)
        if second.returncode != 0:
            assert not (tmp_path / "second").exists()  # a refused init makes nothing
        assert second.returncode == 0, second.stderr.decode()
        run_cli(tmp_path / "second", "ls")


def one_line_bad_input(result: subprocess.CompletedProcess) -> None:
    """Bad input: exit 2 and one line on stderr that is no 'unexpected error'."""
    error = result.stderr.decode(errors="replace")
    assert result.returncode == 2 and len(error.splitlines()) == 1 and "unexpected error" not in error, error


def test_a_store_id_that_is_not_text_is_a_damaged_store_id(store_root: Path) -> None:
    (store_root / "store-id").write_bytes(b"\xff\xfe")
    one_line_bad_input(run_cli(store_root, "ls", check=None))


def test_dump_into_a_missing_folder_is_bad_input(store_root: Path, tmp_path: Path) -> None:
    one_line_bad_input(run_cli(store_root, "dump", "--pause-sweep", "0", "-o", str(tmp_path / "no" / "x"),
                               check=None))


def test_load_of_a_damaged_header_is_bad_input(store_root: Path, database_url: str | None, tmp_path: Path) -> None:
    dump = tmp_path / "catalog.jsonl"
    run_cli(store_root, "dump", "--pause-sweep", "0", "-o", str(dump))
    lines = dump.read_text().splitlines()
    header = json.loads(lines[0])
    header["node_sequence"] = "x"
    dump.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    with ExitStack() as made:
        target = new_store(tmp_path, "target", database_url, made)
        one_line_bad_input(run_cli(target, "load", str(dump), check=None))


def test_dump_to_a_device_is_refused_and_leaves_it_alone(store_root: Path) -> None:
    """`dump -o /dev/null` once made /dev/null root's alone (the dump file's 0600 mode, set on
    whatever -o named): a target that is not a regular file is refused before anything."""
    before = os.stat("/dev/null")
    one_line_bad_input(run_cli(store_root, "dump", "--pause-sweep", "0", "-o", "/dev/null", check=None))
    after = os.stat("/dev/null")
    assert (after.st_mode, after.st_uid) == (before.st_mode, before.st_uid)
