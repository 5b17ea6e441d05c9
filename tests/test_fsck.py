"""fsck finds each kind of planted damage, and --repair fixes what can be fixed without losing data."""

import os
from pathlib import Path

import pytest

from cas.fsck import check_store
from cas.model import ObjectInfo
from cas.store import Store
from tests.conftest import run_cli

CONTENT = b"asset bytes " * 5000


def kinds(store: Store, **options) -> list[str]:
    return sorted(problem.kind for problem in check_store(store, orphan_grace=0, **options).problems)


def put_object(store: Store, tmp_path: Path, content: bytes = CONTENT, bucket: str = "photos") -> ObjectInfo:
    source = tmp_path / f"source-{len(list(tmp_path.iterdir()))}.bin"
    source.write_bytes(content)
    return store.put(bucket, source, name=source.name).object


def alias_of(store: Store, info: ObjectInfo) -> Path:
    return store.tree.alias_path(info.bucket, info.id, info.filename)


def test_clean_store_is_clean(store: Store, tmp_path: Path) -> None:
    put_object(store, tmp_path)
    put_object(store, tmp_path, bucket="other")
    report = check_store(store, verify_content=True, orphan_grace=0)
    assert report.problems == [] and report.clean
    assert report.objects == 2 and report.blobs == 1


def test_removed_blob_is_rebuilt_from_an_alias(store: Store, tmp_path: Path) -> None:
    info = put_object(store, tmp_path)
    store.tree.blob_path(info.hash).unlink()
    assert kinds(store) == ["missing_blob"]
    report = check_store(store, repair=True, orphan_grace=0)
    assert [problem.repaired for problem in report.problems] == [True]
    assert kinds(store, verify_content=True) == []
    assert os.path.samefile(store.tree.blob_path(info.hash), alias_of(store, info))
    assert store.open_object(info.id).read() == CONTENT


def test_truncated_blob_with_no_good_copy_is_reported_not_repaired(store: Store, tmp_path: Path) -> None:
    info = put_object(store, tmp_path)
    blob = store.tree.blob_path(info.hash)
    os.chmod(blob, 0o644)
    os.truncate(blob, 100)  # the alias is the same inode: no good copy is left
    assert kinds(store) == ["blob_size"]
    report = check_store(store, repair=True, orphan_grace=0)
    blob_problem = next(problem for problem in report.problems if problem.kind == "blob_size")
    assert not blob_problem.repaired and "no intact copy" in blob_problem.not_repaired
    assert not report.clean
    assert run_cli(store.root, "fsck", check=1).stdout


def test_truncated_blob_is_repaired_by_uploading_the_content_again(store: Store, tmp_path: Path) -> None:
    info = put_object(store, tmp_path)
    blob = store.tree.blob_path(info.hash)
    os.chmod(blob, 0o644)
    os.truncate(blob, 100)
    again = put_object(store, tmp_path)
    assert again.id == info.id
    assert kinds(store, verify_content=True) == []
    assert store.open_object(info.id).read() == CONTENT


def test_flipped_byte_is_found_only_by_verify_content(store: Store, tmp_path: Path) -> None:
    info = put_object(store, tmp_path)
    blob = store.tree.blob_path(info.hash)
    os.chmod(blob, 0o644)
    with open(blob, "r+b") as file:
        file.seek(1234)
        original = file.read(1)
        file.seek(1234)
        file.write(bytes([original[0] ^ 0xFF]))
    assert kinds(store) == []
    assert kinds(store, verify_content=True) == ["blob_content"]
    report = check_store(store, verify_content=True, repair=True, orphan_grace=0)
    assert not report.clean and report.problems[0].not_repaired
    result = run_cli(store.root, "fsck", "--verify-content", "--json", check=1)
    assert b'"blob_content"' in result.stdout


def test_flipped_byte_is_repaired_from_an_intact_copy(store: Store, tmp_path: Path) -> None:
    """An alias that is a copy with the right content is a source for repair. (A copy where
    the blob could take a link is reported: tests/test_fsck_alias_copies.py.)"""
    info = put_object(store, tmp_path)
    alias = alias_of(store, info)
    alias.unlink()
    store.tree.copy_blob_to(store.tree.blob_path(info.hash), alias)
    assert kinds(store) == ["alias_copy"]
    blob = store.tree.blob_path(info.hash)
    os.chmod(blob, 0o644)
    with open(blob, "r+b") as file:
        file.write(b"X")
    assert kinds(store, verify_content=True) == ["alias_copy", "blob_content"]
    report = check_store(store, verify_content=True, repair=True, orphan_grace=0)
    assert report.clean
    assert kinds(store, verify_content=True) == []
    assert store.open_object(info.id).read() == CONTENT


def test_removed_alias_is_relinked(store: Store, tmp_path: Path) -> None:
    info = put_object(store, tmp_path)
    alias_of(store, info).unlink()
    assert kinds(store) == ["missing_alias"]
    assert check_store(store, repair=True, orphan_grace=0).clean
    assert os.path.samefile(alias_of(store, info), store.tree.blob_path(info.hash))
    assert kinds(store) == []


def test_alias_with_other_content_is_replaced(store: Store, tmp_path: Path) -> None:
    info = put_object(store, tmp_path)
    alias = alias_of(store, info)
    alias.unlink()
    alias.write_bytes(b"something else")
    assert kinds(store) == ["alias_mismatch"]
    assert check_store(store, repair=True, orphan_grace=0).clean
    assert alias.read_bytes() == CONTENT


@pytest.mark.parametrize("where", ["blobs/stray.txt", "blobs/ab/cd/not-a-hash", "objects/photos/01/junk",
                                   "objects/stray-file", "tmp/stage-leftover"])
def test_stray_files_are_found_and_removed(store: Store, tmp_path: Path, where: str) -> None:
    info = put_object(store, tmp_path)
    stray = store.root / where
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"stray")
    found = kinds(store)
    assert len(found) == 1 and found[0] in ("stray_file", "orphan_alias", "orphan_staging")
    assert check_store(store, repair=True, orphan_grace=0).clean
    assert not stray.exists()
    assert kinds(store) == []
    assert store.open_object(info.id).read() == CONTENT


def test_orphan_blob_and_alias_are_removed(store: Store, tmp_path: Path) -> None:
    info = put_object(store, tmp_path)
    orphan_hash = "ab" * 32
    orphan = store.tree.blob_path(orphan_hash)
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"no row")
    orphan_alias = store.tree.alias_path("photos", "01234567-89ab-7def-8123-456789abcdef", "x.bin")
    orphan_alias.parent.mkdir(parents=True)
    os.link(orphan, orphan_alias)
    assert kinds(store) == ["orphan_alias", "orphan_blob"]
    assert check_store(store, repair=True, orphan_grace=0).clean
    assert not orphan.exists() and not orphan_alias.parent.exists()
    assert kinds(store) == []
    assert store.open_object(info.id).read() == CONTENT


def test_external_hardlink_is_reported_as_link_count(store: Store, tmp_path: Path) -> None:
    info = put_object(store, tmp_path)
    extra = tmp_path / "extra-link"
    os.link(store.tree.blob_path(info.hash), extra)
    assert kinds(store) == ["link_count"]
    report = check_store(store, repair=True, orphan_grace=0)
    assert not report.clean and extra.exists()
    extra.unlink()
    assert kinds(store) == []


def test_trashed_objects_are_checked_too(store: Store, tmp_path: Path) -> None:
    info = put_object(store, tmp_path)
    store.delete(info.id)
    alias_of(store, info).unlink()
    assert kinds(store) == ["missing_alias"]
    assert check_store(store, repair=True, orphan_grace=0).clean
    assert store.restore(info.id).id == info.id
    assert store.open_object(info.id).read() == CONTENT


def test_cli_exit_codes_and_repair(store: Store, tmp_path: Path) -> None:
    info = put_object(store, tmp_path)
    alias_of(store, info).unlink()
    result = run_cli(store.root, "fsck", check=1)
    assert b"missing_alias" in result.stdout
    run_cli(store.root, "fsck", "--repair", check=0)
    assert b"clean" in run_cli(store.root, "fsck", check=0).stdout
