"""EMLINK never fails a put: when a blob has run out of hardlinks, the alias is a copy.

ext4 allows 65,000 links to one inode. The test fills a blob's links up with extra hardlinks
in a folder next to the store (same filesystem, outside it), then puts the same content into
new objects.
"""

import errno
import io
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest

from cas.store import Store
from helpers import blob_files, count, tmp_entries


def filesystem_type(path: Path) -> str:
    """The type of the filesystem holding `path`, from /proc/self/mounts (longest mount point)."""
    path = path.resolve()
    best, kind = "", ""
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            mount_point = fields[1].replace("\\040", " ")
            if (path == Path(mount_point) or Path(mount_point) in path.parents) and len(mount_point) >= len(best):
                best, kind = mount_point, fields[2]
    return kind


@pytest.fixture
def ext4_tmp(tmp_path: Path) -> Path:
    kind = filesystem_type(tmp_path)
    if kind != "ext4":
        pytest.skip(f"the EMLINK test needs ext4 (65,000 links per inode) for tmp_path; {tmp_path} is on {kind or 'unknown'}")
    return tmp_path


@pytest.fixture
def exhausted(ext4_tmp: Path) -> Iterator[list]:
    """Call the yielded function with a blob path: it adds links until EMLINK. Removed afterwards."""
    folders: list[Path] = []

    def exhaust(blob: Path) -> int:
        folder = ext4_tmp / f"extra-links-{len(folders)}"
        folder.mkdir()
        folders.append(folder)
        made = 0
        while True:
            try:
                os.link(blob, folder / str(made))
            except OSError as error:
                assert error.errno == errno.EMLINK, f"link() failed with {error!r}, not EMLINK"
                return made
            made += 1
            assert made < 1_000_000, "no link limit reached"

    try:
        yield exhaust
    finally:
        for folder in folders:
            shutil.rmtree(folder)


def blob_path(root: Path, hash_hex: str) -> Path:
    return root / "blobs" / hash_hex[0:2] / hash_hex[2:4] / hash_hex


def alias_path(root: Path, bucket: str, object_id: str, filename: str) -> Path:
    return root / "objects" / bucket / object_id[-4:-2] / object_id[-2:] / object_id / filename


def test_put_falls_back_to_a_copy_on_emlink(store_root: Path, exhausted) -> None:
    data = os.urandom(300_000)
    with open(store_root / "assetfs.toml", "a") as config:
        config.write("\n[buckets.nodedupe]\ndedupe = false\n")
    with Store.open(store_root) as store:
        first = store.put("linked", io.BytesIO(data), filename="a.bin").object
        blob = blob_path(store_root, first.hash)
        assert first.hash == blake3.blake3(data).hexdigest()

        extra = exhausted(blob)
        link_limit = blob.stat().st_nlink
        assert link_limit == 2 + extra
        assert link_limit >= 65000

        results = [
            store.put("newbucket", io.BytesIO(data), filename="b.bin"),
            store.put("nodedupe", io.BytesIO(data), filename="c.bin"),
            store.put("nodedupe", io.BytesIO(data), filename="d.bin"),
        ]

        assert tmp_entries(store) == []
        assert [result.deduplicated for result in results] == [False, False, False]
        assert blob.stat().st_nlink == link_limit  # nothing more could link to it
        assert blob_files(store_root) == [blob]
        assert count(store, "blobs") == 1
        for result in results:
            info = result.object
            assert info.hash == first.hash and info.size == len(data)
            alias = alias_path(store_root, info.bucket, info.id, info.filename)
            alias_stat = alias.stat()
            assert alias_stat.st_ino != blob.stat().st_ino, "the alias should be a copy"
            assert alias_stat.st_nlink == 1
            assert stat.S_IMODE(alias_stat.st_mode) == 0o444
            assert alias.read_bytes() == data
            with store.open_object(info.id) as file:
                assert file.read() == data
        # a dedup hit in a bucket whose alias is a copy still works
        again = store.put("newbucket", io.BytesIO(data))
        assert again.deduplicated and again.object.id == results[0].object.id
        assert tmp_entries(store) == []
