"""Bad input through the Python API: a clear BadInput (or NotFound) and no change at all.

"No change" is checked by comparing a snapshot of the store (every file and folder under it,
with sizes, inodes, modes and link counts, plus every catalog table's rows) before and after.
"""

import io
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cas.errors import BadInput, NotFound, StoreError
from cas.store import Store
from helpers import file_tree, snapshot, tmp_entries

A_UUID = "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b"


@pytest.fixture
def populated(store: Store) -> Store:
    """A store with something in it: two objects (one named, one trashed) and a hold."""
    named = store.put("docs", io.BytesIO(b"named content"), name="folder/file.txt").object
    store.hold(named.id, "app")
    trashed = store.put("docs", io.BytesIO(b"trashed content")).object
    store.delete(trashed.id)
    store.populated_ids = (named.id, trashed.id)  # type: ignore[attr-defined]
    return store


@contextmanager
def changes_nothing(store: Store) -> Iterator[None]:
    before = snapshot(store)
    yield
    assert tmp_entries(store) == []
    assert snapshot(store) == before


def put_bytes(store: Store, bucket: str = "docs", data: bytes = b"new content", **options):
    return store.put(bucket, io.BytesIO(data), **options)


# buckets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bucket",
    ["Avatars", "UPPER", "-leading-dash", ".leading-dot", "_leading", "a" * 64, "", "..", ".", "a/b", "/abs",
     "a b", "tab\t", "ä", "a\0b", None, 7],
)
def test_invalid_bucket_names(populated: Store, bucket) -> None:
    with changes_nothing(populated):
        with pytest.raises(BadInput, match="bucket"):
            put_bytes(populated, bucket)
        with pytest.raises(BadInput, match="bucket"):
            put_bytes(populated, bucket, name="x/y.txt")
        if bucket is not None:  # list(None) lists every bucket
            with pytest.raises(BadInput, match="bucket"):
                list(populated.list(bucket))


@pytest.mark.parametrize("bucket", ["a", "a" * 63, "0.9_x-y", "avatars.v2"])
def test_valid_bucket_names_at_the_limits(store: Store, bucket: str) -> None:
    info = put_bytes(store, bucket).object
    assert info.bucket == bucket
    assert (store.root / "objects" / bucket / info.id[-4:-2] / info.id[-2:] / info.id / info.filename).is_file()


# filenames -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "filename",
    ["a/b", "/", "nul\0byte", ".", "..", "x" * 256, "é" * 128, "€" * 85 + "x"],  # the last two: 256 bytes of UTF-8
)
def test_invalid_filenames(populated: Store, filename: str) -> None:
    with changes_nothing(populated):
        with pytest.raises(BadInput, match="filename"):
            put_bytes(populated, filename=filename)


@pytest.mark.parametrize("filename", ["x" * 255, "é" * 127 + "x", ".hidden", "...", "name with spaces"])
def test_valid_filenames_at_the_limits(store: Store, filename: str) -> None:
    assert len(filename.encode()) <= 255
    info = put_bytes(store, filename=filename).object
    assert info.filename == filename
    assert (store.root / "objects" / "docs" / info.id[-4:-2] / info.id[-2:] / info.id / filename).read_bytes() == b"new content"


# names -----------------------------------------------------------------------------------


def long_name(total_bytes: int) -> str:
    """A name of 17 components (each at most 255 bytes) that is `total_bytes` long."""
    component_bytes = total_bytes - 16
    sizes = [component_bytes // 17] * 17
    sizes[-1] += component_bytes - sum(sizes)
    return "/".join("n" * size for size in sizes)


@pytest.mark.parametrize(
    "name",
    [
        "a//b", "a/", "", "/", "//", "a/\0/b", "nul\0", "a/../b", "..", "../escape", "a/./b", ".",
        A_UUID + "/file.txt", A_UUID,  # other spellings of an id are names: tests/test_id_names.py
        "a/" + "c" * 256, "a/" + "é" * 128,
        long_name(4097), long_name(5000),
    ],
)
def test_invalid_names(populated: Store, name: str) -> None:
    with changes_nothing(populated):
        with pytest.raises(BadInput, match="name"):
            put_bytes(populated, name=name)


def test_names_at_the_limits(store: Store) -> None:
    name = long_name(4096)
    assert len(name.encode()) == 4096 and max(len(part) for part in name.split("/")) <= 255
    info = put_bytes(store, name=name).object
    assert info.names == [name]
    assert put_bytes(store, data=b"leading slash", name="/top/level.txt").object.names == ["top/level.txt"]
    # an id-like component is fine below the first level
    assert put_bytes(store, data=b"id below", name=f"by-id/{A_UUID}").object.names == [f"by-id/{A_UUID}"]


# object ids ------------------------------------------------------------------------------

BAD_IDS = [
    "", "not-an-id", "0190a1b2", A_UUID.replace("-", ""), "{" + A_UUID + "}", "urn:uuid:" + A_UUID,
    A_UUID + "0", " " + A_UUID, A_UUID[:-1] + "g", "../" + A_UUID, None, 42,
]

ID_OPERATIONS = {
    "get": lambda store, object_id: store.get(object_id),
    "get_trashed": lambda store, object_id: store.get_trashed(object_id),
    "open_object": lambda store, object_id: store.open_object(object_id),
    "delete": lambda store, object_id: store.delete(object_id),
    "restore": lambda store, object_id: store.restore(object_id),
    "hold": lambda store, object_id: store.hold(object_id, "owner"),
    "release": lambda store, object_id: store.release(object_id, "app"),
    "holds": lambda store, object_id: store.holds(object_id),
}


@pytest.mark.parametrize("operation", sorted(ID_OPERATIONS))
def test_ids_that_are_not_uuids(populated: Store, operation: str) -> None:
    with changes_nothing(populated):
        for bad_id in BAD_IDS:
            with pytest.raises(BadInput, match="object id"):
                ID_OPERATIONS[operation](populated, bad_id)


@pytest.mark.parametrize("operation", sorted(set(ID_OPERATIONS) - {"holds"}))
def test_unknown_ids_are_not_found(populated: Store, operation: str) -> None:
    with changes_nothing(populated):
        for unknown in (A_UUID, str(uuid.UUID(int=0)), str(uuid.uuid4())):
            with pytest.raises(NotFound):
                ID_OPERATIONS[operation](populated, unknown)


def test_uppercase_ids_mean_the_same_object(populated: Store) -> None:
    named_id, _ = populated.populated_ids
    assert populated.get(named_id.upper()).id == named_id


@pytest.mark.parametrize("owner", ["", "x" * 256, "nul\0", None, 5])
def test_invalid_hold_owners(populated: Store, owner) -> None:
    named_id, _ = populated.populated_ids
    with changes_nothing(populated):
        with pytest.raises(BadInput, match="owner"):
            populated.hold(named_id, owner)
        with pytest.raises(BadInput, match="owner"):
            populated.release(named_id, owner)


# sources ---------------------------------------------------------------------------------


def test_missing_source_file(populated: Store, tmp_path: Path) -> None:
    with changes_nothing(populated):
        with pytest.raises(BadInput, match="no such file"):
            populated.put("docs", tmp_path / "does-not-exist.txt")
        with pytest.raises(BadInput, match="no such file"):
            populated.put("docs", str(tmp_path / "does-not-exist.txt"), name="x.txt")


def test_broken_symlink_as_source(populated: Store, tmp_path: Path) -> None:
    link = tmp_path / "dangling"
    link.symlink_to(tmp_path / "nowhere")
    with changes_nothing(populated):
        with pytest.raises(BadInput, match="no such file"):
            populated.put("docs", link)


def test_directory_as_source(populated: Store, tmp_path: Path) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    with changes_nothing(populated):
        with pytest.raises(BadInput, match="folder"):
            populated.put("docs", folder)


def test_socket_as_source(populated: Store) -> None:
    """open() of a unix socket fails with ENXIO, for root too."""
    folder = Path(tempfile.mkdtemp(prefix="assetfs-sock-"))
    path = folder / "s"  # short: socket paths are limited to 108 bytes
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path))
        with changes_nothing(populated):
            with pytest.raises(BadInput, match="cannot read"):
                populated.put("docs", path)
    finally:
        server.close()
        path.unlink(missing_ok=True)
        folder.rmdir()


UNREADABLE_SNIPPET = r"""
import os, sys
from cas.errors import AssetfsError
from cas.store import Store
root, source = sys.argv[1:3]
store = Store.open(root)
os.setgid(65534)
os.setuid(65534)  # nobody: root could read anything
try:
    store.put("docs", source)
    print("stored")
except AssetfsError as error:
    print(type(error).__name__ + ": " + str(error))
sys.stdout.flush()
os._exit(0)  # no cleanup as nobody in a store owned by root
"""


def test_unreadable_source_file(populated: Store) -> None:
    if os.geteuid() != 0:
        pytest.skip("the subprocess drops root privileges to read as nobody")
    folder = Path(tempfile.mkdtemp(prefix="assetfs-unreadable-"))
    try:
        folder.chmod(0o755)
        source = folder / "secret.txt"
        source.write_bytes(b"nobody may read this")
        source.chmod(0o000)
        with changes_nothing(populated):
            result = subprocess.run(
                [sys.executable, "-c", UNREADABLE_SNIPPET, str(populated.root), str(source)],
                capture_output=True, text=True, timeout=120,
            )
            assert result.returncode == 0, result.stderr
        assert result.stdout.strip().startswith("BadInput: "), result.stdout + result.stderr
        assert "permission denied" in result.stdout
    finally:
        for entry in folder.iterdir():
            entry.unlink()
        folder.rmdir()


@pytest.mark.parametrize("buffering", [0, -1])
def test_source_that_fails_to_read(populated: Store, buffering: int) -> None:
    """A read error from the caller's source (EIO from /proc/self/mem at offset 0) is reported as
    such, and nothing is kept of what was staged."""
    with open("/proc/self/mem", "rb", buffering=buffering) as stream, changes_nothing(populated):
        with pytest.raises(StoreError, match="reading the source failed"):
            populated.put("docs", stream)
    with changes_nothing(populated):
        with pytest.raises(StoreError, match="reading the source failed"):
            populated.put("docs", "/proc/self/mem")


# opening and creating stores -------------------------------------------------------------


def test_open_a_folder_that_is_not_a_store(tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a store")
    before = file_tree(folder)
    with pytest.raises(BadInput, match="not an assetfs store"):
        Store.open(folder)
    with pytest.raises(BadInput, match="not an assetfs store"):
        Store.open(tmp_path / "missing")
    with pytest.raises(BadInput):
        Store.open(folder / "notes.txt")
    assert file_tree(folder) == before
    assert not (tmp_path / "missing").exists()


def test_open_a_folder_with_only_a_config_file(store_root: Path, tmp_path: Path) -> None:
    half = tmp_path / "half"
    half.mkdir()
    (half / "assetfs.toml").write_text((store_root / "assetfs.toml").read_text())
    before = file_tree(half)
    with pytest.raises(BadInput, match="not an assetfs store"):
        Store.open(half)
    assert file_tree(half) == before


def test_init_on_a_non_empty_folder_that_is_not_a_store(tmp_path: Path, database_url: str | None) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "README").write_text("someone's files")
    (folder / "blobs").mkdir()  # even with a store-like folder in it
    before = file_tree(folder)
    with pytest.raises(BadInput, match="not empty"):
        Store.init(folder, database_url=database_url)
    assert file_tree(folder) == before
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    with pytest.raises(BadInput, match="not a folder"):
        Store.init(a_file, database_url=database_url)
    assert a_file.read_text() == "x"


# configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config, key",
    [
        ('colour = "red"\n', "colour"),
        ('[gc]\nmin_agee = "1h"\n', "min_agee"),
        ('[bucket_defaults]\ngraze = "1d"\n', "graze"),
        ("[buckets.avatars]\ndedup = true\n", "dedup"),
        ("[gc]\nbatch_size = \"500\"\n", "batch_size"),
        ("[gc]\nbatch_size = 0\n", "batch_size"),
        ("[gc]\nbatch_size = true\n", "batch_size"),
        ("[buckets.avatars]\ndedupe = \"yes\"\n", "dedupe"),
        ("[bucket_defaults]\ndedupe = 1\n", "dedupe"),
        ("orphan_grace = 3600\n", "orphan_grace"),
        ("database_url = 5\n", "database_url"),
        ('[buckets.avatars]\nrules = "select 1 from profile where photo_id = :id"\n', "rules"),
        ('[buckets.avatars]\nrules = ["select 1 from profile"]\n', "rules"),
        ('[bucket_defaults]\ngrace = "7 days"\n', "grace"),
        ('[buckets.avatars]\ngrace = ""\n', "grace"),
        ('[bucket_defaults]\nfree_superseded = 60\n', "free_superseded"),
        ('[buckets.avatars]\nfree_superseded = "a minute"\n', "free_superseded"),
        ('[gc]\ninterval = "10"\n', "interval"),
        ('[gc]\nmin_age = "-1h"\n', "min_age"),
        ('[gc]\nmin_age = "1y"\n', "min_age"),
        ('orphan_grace = "1h x"\n', "orphan_grace"),
        ("[buckets.Avatars]\ndedupe = true\n", "Avatars"),
        ('[buckets."a/b"]\ndedupe = true\n', "a/b"),
        ('[buckets."-x"]\ndedupe = true\n', "-x"),
        ("[buckets]\navatars = 3\n", "avatars"),
        ("buckets = 3\n", "buckets"),
        ("gc = 5\n", "gc"),
        ("bucket_defaults = []\n", "bucket_defaults"),
        ('write_lock_timeout = "0s"\n', "write_lock_timeout"),
        ('[gc]\nrule_timeout = "0s"\n', "rule_timeout"),
        ('disk_reserve = "8 potatoes"\n', "disk_reserve"),
        ("disk_reserve = -1\n", "disk_reserve"),
    ],
)
def test_bad_config_names_the_key(store_root: Path, config: str, key: str) -> None:
    config_path = store_root / "assetfs.toml"
    with Store.open(store_root) as store:
        database_url = store.config.database_url
        before = snapshot(store)
    url_line = f"database_url = {json.dumps(database_url)}\n" if database_url and "database_url" not in config else ""
    good = config_path.read_text()
    config_path.write_text(url_line + config)
    try:
        with pytest.raises(BadInput) as failure:
            Store.open(store_root)
        message = str(failure.value)
        assert key in message, f"the message does not name {key!r}: {message}"
        assert "assetfs.toml" in message
    finally:
        config_path.write_text(good)
    with Store.open(store_root) as store:
        assert snapshot(store) == before


def test_config_that_is_not_toml(store_root: Path) -> None:
    (store_root / "assetfs.toml").write_text("[gc\nmin_age = \n")
    with pytest.raises(BadInput, match="not valid TOML"):
        Store.open(store_root)


def test_bucket_settings_inherit_the_defaults(store_root: Path) -> None:
    """The good case next to the bad ones: a bucket table overrides only what it names."""
    config_path = store_root / "assetfs.toml"
    text = config_path.read_text().replace('grace = "7d"', 'grace = "2d"')
    config_path.write_text(text + '\n[buckets.avatars]\ndedupe = false\n')
    with Store.open(store_root) as store:
        assert store.config.bucket("avatars").dedupe is False
        assert store.config.bucket("avatars").grace == 2 * 86400
        assert store.config.bucket("other").dedupe is True


# put options -----------------------------------------------------------------------------


@pytest.mark.parametrize("delta", [-3600.0, -0.001, 0.0])
def test_expiry_in_the_past(populated: Store, delta: float) -> None:
    with changes_nothing(populated):
        with pytest.raises(BadInput, match="expir"):
            put_bytes(populated, expires_at=time.time() + delta)


@pytest.mark.parametrize("expires_at", [math.nan, math.inf, "tomorrow", True])
def test_expiry_that_is_not_a_time(populated: Store, expires_at) -> None:
    with changes_nothing(populated):
        with pytest.raises(BadInput, match="expir"):
            put_bytes(populated, expires_at=expires_at)


@pytest.mark.parametrize(
    "content_type",
    ["", "image", "image/", "/png", "image png", "ima ge/png", "text/plain\nX-Injected: 1",
     "text/plain; charset=utf-8\n", "image//png", "image/png/x", 5],
)
def test_invalid_content_type(populated: Store, content_type) -> None:
    with changes_nothing(populated):
        with pytest.raises(BadInput, match="content type"):
            put_bytes(populated, content_type=content_type)


@pytest.mark.parametrize("key", ["", "a b", "-lead", ".lead", "k" * 129, "ключ", "a/b", "nul\0", 5, None])
def test_invalid_metadata_key(populated: Store, key) -> None:
    with changes_nothing(populated):
        with pytest.raises(BadInput, match="metadata key"):
            put_bytes(populated, metadata={key: "value"})


@pytest.mark.parametrize(
    "metadata",
    [{"key": 5}, {"key": None}, {"key": "nul\0"}, {"big": "x" * (64 * 1024 + 1)}, ["not", "a", "mapping"], "text"],
)
def test_invalid_metadata(populated: Store, metadata) -> None:
    with changes_nothing(populated):
        with pytest.raises(BadInput, match="metadata"):
            put_bytes(populated, metadata=metadata)


def test_bad_input_is_reported_before_reading_the_source(populated: Store) -> None:
    """A stream is not consumed when an argument is bad: nothing was read, nothing staged."""
    stream = io.BytesIO(b"untouched")
    with changes_nothing(populated):
        with pytest.raises(BadInput):
            populated.put("docs", stream, content_type="bad")
        with pytest.raises(BadInput):
            populated.put("docs", stream, name="a//b")
    assert stream.tell() == 0
