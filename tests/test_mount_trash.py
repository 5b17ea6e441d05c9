"""Trash and restore through the mount: `rm -r /<bucket>/<id>` moves the object to the trash,
`mv /.trash/<bucket>/<id> /<bucket>/` brings it back with its names (docs/fuse.md)."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mounting import Mount, expect_errno, run

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None,
                       reason="needs /dev/fuse and fusermount3"),
]


def write_named_file(mount: Mount) -> str:
    """photos/docs/a.txt (mode 0640, an xattr) and its hardlink docs/b.txt; the object's id."""
    folder = mount.path / "photos" / "docs"
    folder.mkdir(parents=True)
    (folder / "a.txt").write_text("keep me")
    os.chmod(folder / "a.txt", 0o640)
    os.setxattr(folder / "a.txt", "user.colour", b"green")
    os.link(folder / "a.txt", folder / "b.txt")
    with mount.store() as store:
        [info] = list(store.list("photos"))
    assert info.names == ["docs/a.txt", "docs/b.txt"]
    return info.id


def test_rm_r_of_an_id_folder_trashes_the_object_and_mv_restores_it_with_its_names(mounted: Mount) -> None:
    object_id = write_named_file(mounted)
    bucket, trash = mounted.path / "photos", mounted.path / ".trash" / "photos"

    run("rm", "-r", bucket / object_id)
    assert object_id not in os.listdir(bucket / ".by-id")
    assert os.listdir(bucket / "docs") == []  # its names went with it
    assert not (bucket / "docs" / "a.txt").exists()  # no cached dentry still leads to them
    assert os.listdir(trash) == [object_id]
    assert (trash / object_id / "a.txt").read_text() == "keep me"
    with mounted.store() as store:
        assert store.get_trashed(object_id).names == []

    run("mv", trash / object_id, f"{bucket}/")
    assert object_id in os.listdir(bucket / ".by-id") and os.listdir(trash) == []
    assert (bucket / object_id / "a.txt").read_text() == "keep me"
    restored = bucket / "docs" / "a.txt"
    assert restored.read_text() == "keep me" and (bucket / "docs" / "b.txt").read_text() == "keep me"
    assert restored.stat().st_mode & 0o777 == 0o640
    assert os.getxattr(restored, "user.colour") == b"green"
    with mounted.store() as store:
        info = store.get(object_id)
    assert info.deleted_at is None and info.names == ["docs/a.txt", "docs/b.txt"]


def test_the_id_view_refuses_every_other_change_and_changes_nothing(mounted: Mount) -> None:
    object_id = write_named_file(mounted)
    bucket, trash = mounted.path / "photos", mounted.path / ".trash" / "photos"
    expect_errno({errno.ENOTEMPTY}, lambda: os.rmdir(bucket / object_id))
    expect_errno({errno.ENOENT}, lambda: os.unlink(bucket / object_id / "other.txt"))
    expect_errno({errno.EPERM}, lambda: os.rename(bucket / object_id, trash / object_id))
    expect_errno({errno.EPERM}, lambda: os.rename(bucket / object_id, bucket / "docs" / "moved"))
    run("rm", "-r", bucket / object_id)
    expect_errno({errno.EPERM}, lambda: os.unlink(trash / object_id / "a.txt"))
    expect_errno({errno.EPERM}, lambda: os.rmdir(trash / object_id))
    expect_errno({errno.EPERM}, lambda: os.rename(trash / object_id, bucket / "docs" / "elsewhere"))
    os.mkdir(mounted.path / "fonts")
    expect_errno({errno.EPERM}, lambda: os.rename(trash / object_id, mounted.path / "fonts" / object_id))
    with mounted.store() as store:
        assert store.get_trashed(object_id).deleted_at is not None
        assert list(store.list("photos")) == []


def test_rm_r_of_a_whole_bucket_trashes_its_objects_and_keeps_the_bucket(mounted: Mount) -> None:
    write_named_file(mounted)
    (mounted.path / "photos" / "c.txt").write_text("other")
    mounted.settle()  # both files committed: each has its object, in an id folder
    result = run_failing("rm", "-r", mounted.path / "photos")
    assert "Operation not permitted" in result  # .by-id stays (and the bucket keeps its trash)
    assert os.listdir(mounted.path / "photos") == [".by-id"] and os.listdir(mounted.path / "photos" / ".by-id") == []
    assert len(os.listdir(mounted.path / ".trash" / "photos")) == 2
    with mounted.store() as store:
        assert list(store.list("photos")) == [] and len(list(store.list("photos", deleted=True))) == 2


def run_failing(*command: str | Path) -> str:
    """Run a tool that must fail; its stderr."""
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=240)
    assert result.returncode != 0, f"{command} succeeded"
    return result.stderr
