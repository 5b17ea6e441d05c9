"""Sparse files keep their holes: in the put's staged copy and blob, in the mount's staged
copy (also a copy-on-write of a sparse blob) and in the blob it becomes; the hash is of the
logical content (holes read as zeros), so the content reads back right and dedups with the
same bytes written out (cas/sparse.py)."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import blake3
import pytest

from cas import sparse
from cas.store import Store
from conftest import run_cli
from mounting import Mount

MIB = 1024 * 1024
GIB = 1024 * MIB
LITTLE = 4 * MIB  # "uses little disk": far below the 1 GiB hole

needs_fuse = pytest.mark.skipif(not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None,
                                reason="needs /dev/fuse and fusermount3")


def disk_bytes(path: Path | str) -> int:
    return os.stat(path).st_blocks * 512


def logical_hash(pieces: list[tuple[int, bytes]], size: int) -> str:
    """BLAKE3 of a file of `size` bytes holding `pieces` at their offsets and zeros elsewhere."""
    hasher, position = blake3.blake3(), 0
    for offset, data in sorted(pieces):
        sparse.hash_zeros(hasher, offset - position)
        hasher.update(data)
        position = offset + len(data)
    sparse.hash_zeros(hasher, size - position)
    return hasher.hexdigest()


def make_sparse(path: Path, pieces: list[tuple[int, bytes]], size: int) -> None:
    with open(path, "wb") as file:
        for offset, data in pieces:
            os.pwrite(file.fileno(), data, offset)
        file.truncate(size)


def blob_of(store: Store, object_hash: str) -> Path:
    return store.tree.blob_path(object_hash)


PIECES = [(0, b"head" * 1024), (GIB + 12345, b"tail" * 1024)]
SIZE = GIB + 12345 + 4096 + 100


def test_sparse_helpers_copy_and_hash_only_data(tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    make_sparse(source, PIECES, SIZE)
    expected = logical_hash(PIECES, SIZE)
    with open(source, "rb") as reading, open(tmp_path / "copy.bin", "wb") as copy, \
            open(tmp_path / "copied.bin", "wb") as copied:
        assert sparse.has_holes(reading.fileno(), SIZE)
        assert sparse.hash_file(reading.fileno(), SIZE) == expected
        assert sparse.copy_hashing(reading.fileno(), copy.fileno(), SIZE) == expected
        sparse.copy_file(reading.fileno(), copied.fileno(), SIZE)
    for name in ("copy.bin", "copied.bin"):
        target = tmp_path / name
        assert target.stat().st_size == SIZE and disk_bytes(target) < LITTLE, name
        with open(target, "rb") as reading:
            for offset, data in PIECES:
                assert os.pread(reading.fileno(), len(data), offset) == data
            assert os.pread(reading.fileno(), 8192, GIB // 2) == bytes(8192)
    dense = tmp_path / "dense.bin"
    dense.write_bytes(os.urandom(MIB))
    with open(dense, "rb") as reading:
        assert not sparse.has_holes(reading.fileno(), MIB)
        assert sparse.hash_file(reading.fileno(), MIB) == blake3.blake3(dense.read_bytes()).hexdigest()


def test_a_put_of_a_sparse_file_keeps_its_holes_in_the_blob(store: Store, tmp_path: Path) -> None:
    source = tmp_path / "disk.img"
    make_sparse(source, PIECES, SIZE)
    result = store.put("images", source, name="disk.img")
    assert result.object.hash == logical_hash(PIECES, SIZE) and result.object.size == SIZE
    blob = blob_of(store, result.object.hash)
    assert blob.stat().st_size == SIZE and disk_bytes(blob) < LITTLE
    with store.open_object(result.object.id) as stored:
        for offset, data in PIECES:
            stored.seek(offset)
            assert stored.read(len(data)) == data
        stored.seek(GIB - 4096)
        assert stored.read(8192) == bytes(8192)
    assert os.listdir(store.tree.tmp) == []


def test_a_sparse_file_and_its_bytes_written_out_are_one_content(store: Store, tmp_path: Path) -> None:
    pieces, size = [(3 * MIB, b"x" * 100)], 5 * MIB
    holed, dense = tmp_path / "holed.bin", tmp_path / "dense.bin"
    make_sparse(holed, pieces, size)
    dense.write_bytes(bytes(3 * MIB) + b"x" * 100 + bytes(size - 3 * MIB - 100))
    first = store.put("images", holed)
    second = store.put("images", dense)
    assert first.object.hash == second.object.hash == blake3.blake3(dense.read_bytes()).hexdigest()
    assert second.deduplicated


def test_cli_put_of_a_sparse_file_keeps_it_sparse(store_root: Path, tmp_path: Path) -> None:
    source = tmp_path / "vm.img"
    make_sparse(source, PIECES, SIZE)
    run_cli(store_root, "put", "images", str(source))
    with Store.open(store_root) as store:
        [info] = list(store.list("images"))
        assert info.hash == logical_hash(PIECES, SIZE)
        assert disk_bytes(blob_of(store, info.hash)) < LITTLE


def staged_files_of(mount: Mount) -> list[str]:
    """The daemon's open files in its journal folder (its staged copies, unnamed or not),
    but for the empty ones it keeps for its next creates (fusefs/spares.py)."""
    folder = str(mount.store_root / "tmp")
    found = []
    for fd in os.listdir(f"/proc/{mount.process.pid}/fd"):
        try:
            target = os.readlink(f"/proc/{mount.process.pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        link = f"/proc/{mount.process.pid}/fd/{fd}"
        info = os.stat(link)
        if target.startswith(folder + "/closed-") and stat.S_ISREG(info.st_mode) and info.st_size > 0:
            found.append(link)
    return found


def read_pieces(path: Path, pieces: list[tuple[int, bytes]], holes: list[int]) -> None:
    with open(path, "rb") as reading:
        for offset, data in pieces:
            assert os.pread(reading.fileno(), len(data), offset) == data, offset
        for offset in holes:
            assert os.pread(reading.fileno(), 65536, offset) == bytes(65536), offset


@needs_fuse
@pytest.mark.timeout(300)
def test_a_file_with_a_1_gib_hole_written_through_the_mount_stays_sparse(mounted: Mount) -> None:
    folder = mounted.path / "images"
    folder.mkdir()
    path = folder / "holed.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for offset, data in PIECES:
            os.pwrite(fd, data, offset)
        os.ftruncate(fd, SIZE)
        [staged] = staged_files_of(mounted)
        assert os.stat(staged).st_size == SIZE and disk_bytes(staged) < LITTLE
    finally:
        os.close(fd)
    with mounted.store() as store:
        info = store.find("images", "holed.bin")
        assert info.hash == logical_hash(PIECES, SIZE) and info.size == SIZE
        assert disk_bytes(blob_of(store, info.hash)) < LITTLE
    read_pieces(path, PIECES, [MIB, GIB // 2, GIB - MIB])

    # a change in the middle: the copy-on-write of the sparse blob keeps its holes too
    middle = (GIB // 2, b"middle")
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, middle[1], middle[0])
        [staged] = staged_files_of(mounted)
        assert os.stat(staged).st_size == SIZE and disk_bytes(staged) < LITTLE
    finally:
        os.close(fd)
    pieces = sorted([*PIECES, middle])
    with mounted.store() as store:
        info = store.find("images", "holed.bin")
        assert info.hash == logical_hash(pieces, SIZE)
        assert disk_bytes(blob_of(store, info.hash)) < LITTLE
    read_pieces(path, pieces, [MIB, GIB // 2 + MIB, GIB - MIB])
