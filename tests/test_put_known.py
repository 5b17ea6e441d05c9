"""A put of a large file whose content is stored already only hashes it: nothing is staged.

The crash point `put:staged` proves which way a put went: a put that stages its data is
killed there, one that finds its content stored never reaches it.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cas.blobtree import PREFIX_SIZE, BlobTree
from cas.fsck import check_store
from cas.store import KNOWN_CONTENT_MIN_SIZE, Store
from helpers import blob_files

SIZE = KNOWN_CONTENT_MIN_SIZE + 12345

PUT_SNIPPET = """
import sys
from cas.store import Store
with Store.open(sys.argv[1]) as store:
    print(store.put(sys.argv[2], sys.argv[3]).object.hash)
"""


def put_killed_if_staged(store_root: Path, bucket: str, source: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PUT_SNIPPET, str(store_root), bucket, str(source)],
                          env={**os.environ, "ASSETFS_CRASH_AT": "put:staged"}, capture_output=True, timeout=60)


@pytest.fixture
def stored(store: Store, tmp_path: Path) -> tuple[Path, str]:
    source = tmp_path / "large.bin"
    source.write_bytes(os.urandom(SIZE))
    return source, store.put("first", source).object.hash


def test_stored_content_is_not_staged_again(store: Store, stored: tuple[Path, str]) -> None:
    source, hash_hex = stored
    result = put_killed_if_staged(store.root, "second", source)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip() == hash_hex
    [info] = store.list("second")
    assert info.hash == hash_hex and store.open_object(info.id).read() == source.read_bytes()
    assert os.path.samefile(store.tree.alias_path("second", info.id, info.filename), store.tree.blob_path(hash_hex))
    assert len(blob_files(store.root)) == 1
    assert check_store(store, verify_content=True, orphan_grace=0).problems == []


def test_same_size_and_prefix_but_other_content_is_staged(store: Store, stored: tuple[Path, str],
                                                          tmp_path: Path) -> None:
    source, hash_hex = stored
    lookalike = tmp_path / "lookalike.bin"
    data = bytearray(source.read_bytes())
    data[-1] ^= 0xFF  # same size, same first PREFIX_SIZE bytes, other content
    lookalike.write_bytes(bytes(data))
    assert bytes(data[:PREFIX_SIZE]) == source.read_bytes()[:PREFIX_SIZE]
    assert put_killed_if_staged(store.root, "second", lookalike).returncode == -signal.SIGKILL
    info = store.put("second", lookalike).object
    assert info.hash != hash_hex and store.open_object(info.id).read() == bytes(data)
    report = check_store(store, verify_content=True, orphan_grace=0)
    assert [problem.kind for problem in report.problems] == ["orphan_staging"]  # left by the killed put


def test_small_files_and_streams_are_staged(store: Store, tmp_path: Path) -> None:
    small = tmp_path / "small.bin"
    small.write_bytes(os.urandom(KNOWN_CONTENT_MIN_SIZE - 1))
    store.put("first", small)
    assert put_killed_if_staged(store.root, "second", small).returncode == -signal.SIGKILL
    with open(small, "rb") as stream:
        stream.seek(10)  # not read from its start: what is put is the rest, so it must be staged
        info = store.put("third", stream).object
    assert store.open_object(info.id).read() == small.read_bytes()[10:]


def test_blob_swept_between_the_match_and_the_commit_is_stored_again(
        store: Store, stored: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The content is hashed and matched, then the blob goes (as a collector's sweep would
    take it); the put must notice under the blob lock and store the data itself."""
    source, hash_hex = stored
    first = store.list("first").__next__()
    real_match = BlobTree.match_stored

    def match_then_sweep(tree: BlobTree, fd: int, size: int, candidates: list[str]):
        known = real_match(tree, fd, size, candidates)
        store.catalog.run(lambda tx: tx.execute("delete from objects where id = :id", {"id": first.id}))
        store.catalog.run(lambda tx: tx.execute("delete from blobs where hash = :hash", {"hash": hash_hex}))
        tree.remove_alias("first", first.id)
        tree.remove_blob(hash_hex)
        return known

    monkeypatch.setattr(BlobTree, "match_stored", match_then_sweep)
    info = store.put("second", source).object
    assert info.hash == hash_hex
    assert store.open_object(info.id).read() == source.read_bytes()
    assert check_store(store, verify_content=True, orphan_grace=0).problems == []
