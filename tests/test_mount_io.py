"""How data moves through the mount: hashes computed while writing are the content's hashes,
whatever the order of the writes; object files keep their page cache across opens; the mount
asks for 1 MiB reads and writes."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import blake3
import pytest

from cas.blobtree import WRITEBACK_STEP
from cas.store import Store
from conftest import run_cli
from fusefs.hashing import SequentialHash
from fusefs.readahead import BDI, READ_AHEAD_KIB
from mounting import Mount, put, run

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None,
                       reason="needs /dev/fuse and fusermount3"),
]

MIB = 1024 * 1024


def object_hash(store_root: Path, name: str) -> str:
    with Store.open(store_root) as store:
        [info] = [info for info in store.list("photos") if name in info.names]
    return info.hash


def write_chunks(path: Path, chunks: list[tuple[int, bytes]], flags: int = os.O_WRONLY | os.O_CREAT) -> None:
    fd = os.open(path, flags, 0o644)
    try:
        for offset, data in chunks:
            os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def test_sequential_hash_is_the_content_hash_only_when_writes_came_in_order() -> None:
    data = os.urandom(3 * MIB + 123)
    pieces = [(offset, data[offset:offset + MIB]) for offset in range(0, len(data), MIB)]
    in_order = SequentialHash()
    for offset, piece in pieces:
        in_order.wrote(offset, piece)
    assert in_order.hex_digest(len(data)) == blake3.blake3(data).hexdigest()
    assert SequentialHash().hex_digest(0) == blake3.blake3(b"").hexdigest()
    reversed_order, gap, short = SequentialHash(), SequentialHash(), SequentialHash()
    for offset, piece in reversed(pieces):
        reversed_order.wrote(offset, piece)
    for offset, piece in pieces[:1] + pieces[2:]:
        gap.wrote(offset, piece)
    for offset, piece in pieces[:-1]:
        short.wrote(offset, piece)
    assert reversed_order.hex_digest(len(data)) is None and reversed_order.broken
    assert gap.hex_digest(len(data)) is None
    assert short.hex_digest(len(data)) is None  # the file is longer than what was hashed
    assert SequentialHash(broken=True).hex_digest(0) is None


def test_objects_written_in_any_order_have_their_contents_hash(mounted: Mount, tmp_path: Path) -> None:
    folder = mounted.path / "photos"
    folder.mkdir()
    data = os.urandom(3 * WRITEBACK_STEP + 5)  # its writeback is started as it is written
    source = tmp_path / "source.bin"
    source.write_bytes(data)
    expected: dict[str, bytes] = {}

    run("cp", source, folder / "sequential.bin")  # in order: hashed while written
    expected["sequential.bin"] = data
    chunks = [(offset, data[offset:offset + MIB]) for offset in range(0, len(data), MIB)]
    write_chunks(folder / "reversed.bin", list(reversed(chunks)))
    expected["reversed.bin"] = data
    write_chunks(folder / "sequential.bin", [(len(data), b"tail")], os.O_WRONLY | os.O_APPEND)  # copy-on-write
    expected["sequential.bin"] = data + b"tail"
    run("cp", source, folder / "patched.bin")
    write_chunks(folder / "patched.bin", [(0, b"head")])  # copy-on-write, starting at 0
    expected["patched.bin"] = b"head" + data[4:]
    fd = os.open(folder / "extended.bin", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, MIB)  # a truncate that leaves bytes the hasher never saw
        os.pwrite(fd, b"end", MIB)
    finally:
        os.close(fd)
    expected["extended.bin"] = bytes(MIB) + b"end"
    run("cp", source, folder / "rewritten.bin")
    with open(folder / "rewritten.bin", "wb") as rewritten:  # O_TRUNC: a fresh sequence
        rewritten.write(data[::-1])
    expected["rewritten.bin"] = data[::-1]

    mounted.settle()
    for name, content in expected.items():
        assert (folder / name).read_bytes() == content, name
        assert object_hash(mounted.store_root, name) == blake3.blake3(content).hexdigest(), name
    verified = run_cli(mounted.store_root, "fsck", "--verify-content", check=None)
    assert verified.returncode == 0, verified.stdout.decode()


def resident_bytes(path: Path) -> int:
    """How much of the file is in the page cache (util-linux fincore; it opens the file)."""
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


@pytest.mark.skipif(shutil.which("fincore") is None, reason="needs fincore (util-linux)")
def test_object_files_keep_their_page_cache_across_opens(mounted: Mount, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(4 * MIB))
    object_id = put(mounted.store_root, "photos", source)
    object_file, named = mounted.path / "photos" / object_id / "big.bin", mounted.path / "photos" / "big.bin"
    assert object_file.read_bytes() == named.read_bytes() == source.read_bytes()
    assert resident_bytes(object_file) == 4 * MIB  # kept: fincore's open did not drop it


def test_the_mount_asks_for_1_mib_requests(mounted: Mount) -> None:
    (mounted.path / "photos").mkdir()
    (mounted.path / "photos" / "a.txt").write_text("a")
    assert (mounted.path / "photos" / "a.txt").stat().st_blksize == MIB  # cp writes 1 MiB at a time
    if os.geteuid() == 0:
        device = os.stat(mounted.path).st_dev
        setting = BDI / f"{os.major(device)}:{os.minor(device)}" / "read_ahead_kb"
        assert int(setting.read_text()) == READ_AHEAD_KIB
