"""The mount as people browse it (issue 8, points 7 and 8), through a real mount on both
catalogs: a bucket lists its named tree and one `.by-id` folder, not an id folder per object;
`.by-id` lists every live object, the ones without a name too; `/<bucket>/<id>` still opens
an object; named files carry their object's `user.assetfs.*` attributes (getfattr)."""

from __future__ import annotations

import errno
import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cas.store import PutRequest
from conftest import run_cli
from mounting import Mount, expect_errno, run

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None,
                       reason="needs /dev/fuse and fusermount3"),
]

FOLDERS = ["2021", "2022", "2023", "2024", "drafts"]
NAMED = 400  # more than three readdir pages of 128
UNNAMED = 30


def fill_bucket(mount: Mount) -> tuple[dict[str, str], dict[str, str]]:
    """`photos`: NAMED objects named into five folders and UNNAMED objects without a name, put
    through the store's API; (id → name, id → filename)."""
    with mount.store() as store:
        named = store.put_many("photos", [
            PutRequest(io.BytesIO(b"photo %d" % number), f"{FOLDERS[number % 5]}/img{number:04d}.jpg")
            for number in range(NAMED)])
        unnamed = [store.put("photos", io.BytesIO(b"upload %d" % number), filename=f"upload{number}.bin")
                   for number in range(UNNAMED)]
    return ({result.object.id: result.name for result in named},
            {result.object.id: result.object.filename for result in unnamed})


def test_a_bucket_lists_its_named_tree_and_one_folder_of_ids(mounted: Mount) -> None:
    named, unnamed = fill_bucket(mounted)
    bucket = mounted.path / "photos"
    assert sorted(os.listdir(bucket)) == [".by-id", *FOLDERS]
    assert run("ls", bucket).split() == FOLDERS  # .by-id is hidden, as .trash is at the top
    assert len(os.listdir(bucket / "2024")) == NAMED // 5
    listed = os.listdir(bucket / ".by-id")
    assert len(listed) == len(set(listed)) and set(listed) == named.keys() | unnamed.keys()
    for object_id, filename in unnamed.items():  # no name: browsable by id
        assert os.listdir(bucket / ".by-id" / object_id) == [filename]
    object_id, name = next(iter(named.items()))
    assert (bucket / ".by-id" / object_id / Path(name).name).read_bytes() == (bucket / name).read_bytes()
    some_id, filename = next(iter(unnamed.items()))
    direct, listed = bucket / some_id, bucket / ".by-id" / some_id  # /<bucket>/<id> still opens, unlisted
    assert (direct / filename).read_bytes() == (listed / filename).read_bytes() == b"upload 0"
    assert os.listdir(direct) == os.listdir(listed) == [filename] and (direct / filename).read_bytes()
    assert run("find", bucket, "-type", "f").count("\n") == NAMED + NAMED + UNNAMED  # names, then by id


def test_the_id_folder_trashes_and_restores_and_reserves_its_name(mounted: Mount, tmp_path: Path) -> None:
    _, unnamed = fill_bucket(mounted)
    bucket, by_id = mounted.path / "photos", mounted.path / "photos" / ".by-id"
    object_id, filename = next(iter(unnamed.items()))
    run("rm", "-r", by_id / object_id)
    assert object_id not in os.listdir(by_id) and not (bucket / object_id).exists()
    assert object_id in os.listdir(mounted.path / ".trash" / "photos")
    run("mv", mounted.path / ".trash" / "photos" / object_id, f"{by_id}/")
    assert (by_id / object_id / filename).read_bytes().startswith(b"upload")
    expect_errno({errno.EEXIST}, lambda: os.mkdir(by_id))
    expect_errno({errno.EPERM}, lambda: os.rmdir(by_id))
    expect_errno({errno.EPERM}, lambda: os.rename(by_id, bucket / "elsewhere"))
    expect_errno({errno.EPERM}, lambda: open(by_id / "new.txt", "w"))
    expect_errno({errno.EPERM, errno.EEXIST}, lambda: os.rename(bucket / "2024", by_id))
    (tmp_path / "x.txt").write_text("x")
    refused = run_cli(mounted.store_root, "put", "photos", str(tmp_path / "x.txt"), "--name", ".by-id/x.txt", check=2)
    assert ".by-id" in refused.stderr.decode() and "Traceback" not in refused.stderr.decode()


def test_a_named_file_carries_its_objects_attributes(mounted: Mount) -> None:
    with mounted.store() as store:
        result = store.put("photos", io.BytesIO(b"logo"), name="brand/logo.png", metadata={"author": "ada"})
    info = result.object
    named = mounted.path / "photos" / "brand" / "logo.png"
    dump = run("getfattr", "-d", named)
    for line in (f'user.assetfs.id="{info.id}"', 'user.assetfs.bucket="photos"', f'user.assetfs.hash="{info.hash}"',
                 'user.assetfs.size="4"', 'user.assetfs.meta.author="ada"'):
        assert line in dump
    assert run("getfattr", "--only-values", "-n", "user.assetfs.id", named) == info.id
    # set by hand: kept beside them, and removable; the store's own are not settable
    run("setfattr", "-n", "user.note", "-v", "mine", named)
    run("setfattr", "-n", "user.assetfs.label", "-v", "kept", named)
    real_id = os.getxattr(named, "user.assetfs.id")
    os.setxattr(named, "user.assetfs.id", b"forged")  # the store's: accepted, and nothing changes
    os.removexattr(named, "user.assetfs.hash")
    assert os.getxattr(named, "user.assetfs.id") == real_id and "user.assetfs.hash" in os.listxattr(named)
    assert os.getxattr(named, "user.assetfs.id") == info.id.encode()
    assert {"user.note", "user.assetfs.label", "user.assetfs.id"} <= set(os.listxattr(named))
    os.removexattr(named, "user.note")
    assert "user.note" not in os.listxattr(named) and os.getxattr(named, "user.assetfs.label") == b"kept"


def test_a_file_written_through_the_mount_leads_to_its_object(mounted: Mount) -> None:
    (mounted.path / "photos").mkdir()
    written = mounted.path / "photos" / "notes.txt"
    written.write_text("first")
    mounted.settle()
    first = os.getxattr(written, "user.assetfs.id").decode()
    written.write_text("second")
    mounted.settle()
    second = os.getxattr(written, "user.assetfs.id").decode()
    with mounted.store() as store:
        assert store.find("photos", "notes.txt").id == second != first
    # cp -a copies the attributes too; the copy is a new name, which gets its own: quietly
    copied = subprocess.run(["cp", "-a", str(written), str(mounted.path / "photos" / "copy.txt")],
                            capture_output=True, text=True, timeout=60)
    assert copied.returncode == 0 and copied.stderr == ""
    mounted.settle()
    assert os.getxattr(mounted.path / "photos" / "copy.txt", "user.assetfs.hash") == \
        os.getxattr(written, "user.assetfs.hash")
