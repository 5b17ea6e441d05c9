"""Names that look like ids but are not in the canonical id form (issue 11, finding 19).

Only an object id written as the store writes it (lower-case, hyphenated) is reserved at a
bucket's top, where the mount shows id folders. Other spellings that `uuid.UUID` accepts (32
hex digits such as an md5 sum, `{…}`, `urn:uuid:…`, upper case) are ordinary names: they can
be created through the mount and with `put --name`, and looking one up that does not exist
answers ENOENT (not EINVAL)."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import stat
from pathlib import Path

import pytest

from cas.errors import BadInput
from cas.ids import is_canonical_id
from cas.store import Store
from cas.validate import split_name
from conftest import run_cli
from mounting import Mount, expect_errno
from test_cli import assert_bad_input

A_UUID = "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b"
LOOKALIKES = [
    hashlib.md5(b"assetfs").hexdigest(),  # 32 hex digits
    A_UUID.replace("-", ""),
    "{" + A_UUID + "}",
    "urn:uuid:" + A_UUID,
    A_UUID.upper(),
]


@pytest.mark.parametrize("name", LOOKALIKES)
def test_only_the_canonical_form_is_an_id_name(name: str) -> None:
    assert not is_canonical_id(name)
    assert split_name(f"{name}/file.txt") == [name, "file.txt"]


def test_the_canonical_form_stays_reserved() -> None:
    assert is_canonical_id(A_UUID)
    with pytest.raises(BadInput, match="object id"):
        split_name(A_UUID)


def test_lookalike_names_are_ordinary_names_in_the_mount(mounted: Mount) -> None:
    bucket = mounted.path / "photos"
    bucket.mkdir()
    (bucket / "first.txt").write_text("first")
    with mounted.store() as store:
        [first] = list(store.list("photos"))
    upper_of_real = first.id.upper()  # the upper-case spelling of a real object's id: just a name
    names = [*LOOKALIKES, upper_of_real]
    for name in names:
        expect_errno({errno.ENOENT}, lambda name=name: os.stat(bucket / name))
    for index, name in enumerate(names):
        (bucket / name).write_text(f"content {index}")
    folder = bucket / ("urn:uuid:" + first.id)
    folder.mkdir()
    (folder / "inner.txt").write_text("inner")
    for index, name in enumerate(names):
        info = os.stat(bucket / name)
        assert stat.S_ISREG(info.st_mode)
        assert (bucket / name).read_text() == f"content {index}"
    listed = set(os.listdir(bucket))
    assert set(names) | {folder.name, "first.txt", ".by-id"} <= listed and first.id in os.listdir(bucket / ".by-id")

    # the canonical form is still the id view: a real id is its folder, any other is ENOENT,
    # and neither can be created as a name
    assert stat.S_ISDIR(os.stat(bucket / first.id).st_mode)
    expect_errno({errno.ENOENT}, lambda: os.stat(bucket / A_UUID))
    expect_errno({errno.EINVAL}, lambda: (bucket / A_UUID).write_text("x"))
    expect_errno({errno.EINVAL}, lambda: os.rename(bucket / names[0], bucket / A_UUID))

    with mounted.store() as store:
        stored = {name for info in store.list("photos") for name in info.names}
    assert stored == {*names, f"{folder.name}/inner.txt", "first.txt"}


def test_put_name_takes_lookalike_names(store_root: Path, tmp_path: Path) -> None:
    source = tmp_path / "data.bin"
    source.write_bytes(b"some content")
    for name in LOOKALIKES:
        run_cli(store_root, "put", "photos", str(source), "--name", name)
    listed = [json.loads(line) for line in run_cli(store_root, "ls", "--json").stdout.splitlines()]
    assert {name for record in listed for name in record["names"]} == set(LOOKALIKES)
    line = assert_bad_input(store_root, "put", "photos", str(source), "--name", f"{A_UUID}/data.bin")
    assert "object id" in line
    with Store.open(store_root) as store:
        with pytest.raises(BadInput, match="object id"):
            store.put("photos", io.BytesIO(b"x"), name=A_UUID)
