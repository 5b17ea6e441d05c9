"""A copy of a store made without keeping hard links (`rsync -a` without `-H`) turns every
alias into a copy of its blob: fsck reports each one (alias_copy) and `--repair` makes it a
hard link again, by a link under a staging name renamed over the alias."""

import os
import subprocess
from pathlib import Path

from cas.store import Store
from helpers import allocated_bytes
from tests.conftest import run_cli

CONTENTS = [b"shared content " * 4000, b"other content " * 3000]


def physical_bytes(store_root: Path) -> int:
    """The bytes the blobs and aliases take."""
    return allocated_bytes(store_root / "blobs", store_root / "objects")


def test_rsync_without_hard_links_is_found_and_relinked(store: Store, tmp_path: Path) -> None:
    ids = []  # six objects in three buckets, two contents: three aliases of each blob
    for index in range(6):
        source = tmp_path / f"file-{index}.bin"
        source.write_bytes(CONTENTS[index % 2])
        ids.append(store.put(f"bucket{index % 3}", source, name=f"dir/{source.name}").object.id)
    root = store.root
    store.close()
    copy = tmp_path / "copy"
    subprocess.run(["rsync", "-a", f"{root}/", f"{copy}/"], check=True, timeout=60)
    assert physical_bytes(copy) == 4 * physical_bytes(root)  # each blob and its 3 aliases: 4 files

    found = run_cli(copy, "fsck", "--json", check=1)
    assert b'"alias_copy"' in found.stdout and b'"clean": false' in found.stdout
    assert found.stdout.count(b'"kind": "alias_copy"') == len(ids)

    run_cli(copy, "fsck", "--repair")
    run_cli(copy, "fsck")  # clean (exit 0)
    with Store.open(copy) as copied:
        for object_id in ids:
            info = copied.get(object_id)
            alias = copied.tree.alias_path(info.bucket, info.id, info.filename)
            assert os.path.samefile(alias, copied.tree.blob_path(info.hash))
            assert alias.read_bytes() == CONTENTS[ids.index(object_id) % 2]
        assert sorted(path.name for path in copied.tree.tmp.iterdir()) == []  # no staging name left
    assert physical_bytes(copy) == physical_bytes(root)


def test_an_open_copy_keeps_reading_while_it_is_relinked(store: Store, tmp_path: Path) -> None:
    """The alias is replaced by a rename, never removed first: a reader that opened the copy
    reads it to the end, and the name shows the content at every moment."""
    source = tmp_path / "a.bin"
    source.write_bytes(CONTENTS[0])
    info = store.put("photos", source).object
    alias = store.tree.alias_path(info.bucket, info.id, info.filename)
    copy = tmp_path / "alias-copy"
    copy.write_bytes(alias.read_bytes())
    os.chmod(copy, 0o444)
    os.replace(copy, alias)
    with open(alias, "rb") as reader:
        run_cli(store.root, "fsck", "--repair")
        assert reader.read() == CONTENTS[0]
    assert os.path.samefile(alias, store.tree.blob_path(info.hash))
