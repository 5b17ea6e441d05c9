"""The mount's write-behind makes a batch's blobs and aliases before its commit (cas/ahead.py):
what happens between the two.

Each test commits a file written "through the mount" (`Store.put_staged_many`, with a staged
copy in tmp/ as the mount leaves one) and changes the store right after the files were
made, before the commit: the blob is removed as a collector's sweep would, the file is
renamed, or an object with the same content appears. The commit must end with the node's
object complete, no alias left that no row explains, and fsck clean.
"""

import io
import time
from collections.abc import Callable

import blake3
import pytest

from cas import ahead, names
from cas.blobtree import seal_staged
from cas.fsck import check_store
from cas.store import StagedWrite, Store

CONTENT = b"written through the mount\n" * 100


def node_of(store: Store, bucket: str, path: str) -> int:
    def find(tx) -> int:
        node = names.bucket_root(tx, bucket)
        for part in path.split("/"):
            node = names.lookup(tx, node, part)["id"]
        return node

    return store.catalog.run(find, write=False)


def staged_write(store: Store, node: int, data: bytes = CONTENT) -> StagedWrite:
    path = store.tree.tmp / f"commit-{time.monotonic_ns()}"
    path.write_bytes(data)
    return StagedWrite(staged=seal_staged(path), node=node, mtime=time.time(), version=f"test.{node}", bases=None)


def alias_folders(store: Store, bucket: str) -> set[str]:
    return {folder.name for folder in (store.tree.objects / bucket).glob("*/*/*")}


def commit_with(store: Store, monkeypatch: pytest.MonkeyPatch, between: Callable[[], None], node: int):
    """put_staged_many of CONTENT for `node`, running `between` after the files were made."""
    make_files = ahead.make_files

    def make_files_then(*args, **kwargs) -> None:
        make_files(*args, **kwargs)
        between()

    monkeypatch.setattr(ahead, "make_files", make_files_then)
    [result] = store.put_staged_many([staged_write(store, node)])
    monkeypatch.undo()
    return result


def assert_clean(store: Store) -> None:
    report = check_store(store, verify_content=True, orphan_grace=0)
    assert report.problems == [], [problem.describe() for problem in report.problems]
    assert list(store.tree.tmp.iterdir()) == []


@pytest.fixture
def named(store: Store) -> int:
    store.put("assets", io.BytesIO(b"old content"), name="docs/file.txt")
    return node_of(store, "assets", "docs/file.txt")


def test_the_files_are_made_before_the_commit(store: Store, named: int, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}

    def look() -> None:
        seen["blob"] = store.tree.blob_path(_hash(CONTENT)).read_bytes() == CONTENT
        seen["aliases"] = len(alias_folders(store, "assets"))
        seen["objects"] = len(list(store.list("assets")))

    result = commit_with(store, monkeypatch, look, named)
    assert seen == {"blob": True, "aliases": 2, "objects": 1}  # the old object's alias and the new one's; no row yet
    assert result.object.hash == _hash(CONTENT)
    assert store.open_object(result.object.id).read() == CONTENT
    assert_clean(store)


def test_a_blob_swept_before_the_commit_is_installed_again(store: Store, named: int,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    blob = store.tree.blob_path(_hash(CONTENT))
    result = commit_with(store, monkeypatch, blob.unlink, named)  # what a sweep under the lock may do

    assert store.open_object(result.object.id).read() == CONTENT
    alias = store.tree.alias_path("assets", result.object.id, "file.txt")
    assert alias.stat().st_ino == blob.stat().st_ino  # the alias made ahead pointed at the removed file
    assert_clean(store)


def test_a_file_renamed_before_the_commit_gets_an_alias_of_its_new_name(store: Store, named: int,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def rename() -> None:
        docs = node_of(store, "assets", "docs")
        store.catalog.run(lambda tx: names.rename(tx, docs, "file.txt", docs, "renamed.md", time.time()))

    before = alias_folders(store, "assets")
    result = commit_with(store, monkeypatch, rename, named)

    assert result.object.filename == "renamed.md"
    assert alias_folders(store, "assets") == before | {result.object.id}  # the alias made ahead is gone
    assert store.tree.alias_path("assets", result.object.id, "renamed.md").read_bytes() == CONTENT
    assert_clean(store)


def test_content_stored_meanwhile_is_deduplicated_and_the_alias_made_ahead_removed(
        store: Store, named: int, monkeypatch: pytest.MonkeyPatch) -> None:
    other: list[str] = []
    result = commit_with(store, monkeypatch, lambda: other.append(store.put("assets", io.BytesIO(CONTENT)).object.id),
                         named)

    assert result.deduplicated and result.object.id == other[0]
    assert len(alias_folders(store, "assets")) == 2  # the first file's and the one put meanwhile
    assert_clean(store)


def test_a_failed_commit_leaves_no_alias(store: Store, named: int, monkeypatch: pytest.MonkeyPatch) -> None:
    before = alias_folders(store, "assets")

    def fail_commit(*args, **kwargs):
        raise RuntimeError("the commit failed")

    def break_the_commit() -> None:
        monkeypatch.setattr(store.catalog, "run", fail_commit)

    with pytest.raises(RuntimeError):
        commit_with(store, monkeypatch, break_the_commit, named)
    monkeypatch.undo()

    assert alias_folders(store, "assets") == before
    [old] = store.list("assets")
    assert old.names == ["docs/file.txt"] and store.open_object(old.id).read() == b"old content"


def _hash(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()
