"""The `assetfs` command, run for real in a subprocess, on both catalogs.

Every test drives the installed console script through `run_cli` (conftest.py) and checks
what a user sees: exit codes (0 ok, 1 not found, 2 bad input), the lines on stdout, exactly
one line on stderr for an error and never a traceback. Bad input must change nothing: the
files under the store, every catalog table, `ls --json` and `stats --json` are compared
before and after.
"""

import json
import os
import re
import stat
import subprocess
import uuid
from datetime import datetime
from pathlib import Path

import blake3
import psycopg
import pytest

from cas.store import Store
from conftest import ASSETFS, run_cli

PUT_FIELDS = {"id", "bucket", "hash", "size", "content_type", "name", "deduplicated"}
# `deduplicated` says what one put did; it is not a property of the object, so stat/ls omit it
OBJECT_FIELDS = (PUT_FIELDS - {"deduplicated"}) | {"filename", "created_at", "names"}
TABLES = ("buckets", "blobs", "objects", "nodes", "entries", "holds")
LINE = re.compile(r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})  (.+)")
UNKNOWN_ID = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
KIB = 1024


# helpers -------------------------------------------------------------------------------------


def b3(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return path


def put_lines(result: subprocess.CompletedProcess) -> list[tuple[str, str]]:
    """The (id, `<bucket>/<where>`) pairs of `put`'s plain output, checking each line's form."""
    pairs = []
    for line in result.stdout.decode().splitlines():
        match = LINE.fullmatch(line)
        assert match, f"not an '<id>  <bucket>/<name>' line: {line!r}"
        pairs.append((match.group(1), match.group(2)))
    return pairs


def put_json(root: Path, bucket: str, *args: str, input: bytes | None = None) -> list[dict]:
    result = run_cli(root, "put", bucket, "--json", *args, input=input)
    return [json.loads(line) for line in result.stdout.decode().splitlines()]


def put_one(root: Path, bucket: str, *args: str, input: bytes | None = None) -> dict:
    records = put_json(root, bucket, *args, input=input)
    assert len(records) == 1
    return records[0]


def stat_json(root: Path, object_id: str) -> dict:
    return json.loads(run_cli(root, "stat", object_id, "--json").stdout)


def ls_json(root: Path, *args: str) -> list[dict]:
    return [json.loads(line) for line in run_cli(root, "ls", "--json", *args).stdout.decode().splitlines()]


def stats_json(root: Path) -> dict:
    return json.loads(run_cli(root, "stats", "--json").stdout)


def cat(root: Path, object_id: str) -> bytes:
    return run_cli(root, "cat", object_id).stdout


def assert_error(result: subprocess.CompletedProcess, exit_code: int, stdout_empty: bool = True) -> str:
    """The command failed with `exit_code` and said why in exactly one line; returns that line."""
    out, err = result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")
    assert result.returncode == exit_code, f"exit {result.returncode}, expected {exit_code}\nstdout: {out}\nstderr: {err}"
    assert "Traceback" not in out and "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), f"expected exactly one line on stderr, got {err!r}"
    assert lines[0].startswith("assetfs: ") and len(lines[0]) > len("assetfs: ") + 5, lines[0]
    if stdout_empty:
        assert out == "", f"expected nothing on stdout, got {out!r}"
    return lines[0]


def file_tree(root: Path) -> dict[str, tuple]:
    """Every path under the store (the SQLite files aside: their rows are compared instead)."""
    found = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if relative.startswith("catalog.db"):
            continue
        info = path.lstat()
        if stat.S_ISDIR(info.st_mode):
            found[relative] = ("dir", stat.S_IMODE(info.st_mode))
        else:
            found[relative] = ("file", info.st_size, info.st_nlink, info.st_ino, stat.S_IMODE(info.st_mode))
    return found


def catalog_rows(root: Path) -> dict[str, list[str]]:
    with Store.open(root) as store:
        return {
            table: sorted(map(repr, store.catalog.run(lambda tx, table=table: tx.all(f"select * from {table}"),
                                                      write=False)))
            for table in TABLES
        }


def store_state(root: Path, through_cli: bool = True) -> dict:
    """What "bad input changes nothing" compares: files, catalog rows, `ls --json`, `stats --json`."""
    state = {"files": file_tree(root), "rows": catalog_rows(root)}
    if through_cli:
        state["ls"] = run_cli(root, "ls", "--json").stdout.decode()
        state["stats"] = stats_json(root)
    return state


def assert_bad_input(root: Path, *args: str, input: bytes | None = None) -> str:
    """`assetfs ARGS` exits 2 with one line on stderr and changes nothing in the store."""
    before = store_state(root)
    line = assert_error(run_cli(root, *args, input=input, check=None), 2)
    assert store_state(root) == before, f"assetfs {' '.join(args)} changed the store"
    return line


class BadInputs:
    """Many bad commands against one store: files and rows are compared after each command,
    and `ls --json` / `stats --json` as well at the end (`finish`)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.before = store_state(root)
        self.quick = {key: self.before[key] for key in ("files", "rows")}

    def __call__(self, *args: str, input: bytes | None = None) -> str:
        line = assert_error(run_cli(self.root, *args, input=input, check=None), 2)
        assert store_state(self.root, through_cli=False) == self.quick, f"assetfs {' '.join(args)} changed the store"
        return line

    def finish(self) -> None:
        assert store_state(self.root) == self.before


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A folder for source files, outside the store."""
    folder = tmp_path / "files"
    folder.mkdir()
    return folder


@pytest.fixture
def populated(store_root: Path, files: Path) -> dict:
    """A store with a named object, an unnamed held one, a trashed one and a named tree."""
    named = put_one(store_root, "docs", str(write(files / "readme.txt", "read me\n")), "--name", "guide/readme.txt")
    held = put_one(store_root, "media", str(write(files / "blob.bin", os.urandom(2000))), "--no-name")
    trashed = put_one(store_root, "media", str(write(files / "old.txt", "old\n")))
    run_cli(store_root, "hold", "add", held["id"], "app")
    run_cli(store_root, "rm", trashed["id"])
    return {"named": named["id"], "held": held["id"], "trashed": trashed["id"],
            "source": str(write(files / "fresh.txt", "content the store has not seen\n"))}


# init and the store location -----------------------------------------------------------------


def init_args(database_url: str | None) -> list[str]:
    return ["init"] + (["--database-url", database_url] if database_url else [])


def postgres_tables(database_url: str) -> int:
    with psycopg.connect(database_url) as connection:
        return connection.execute(
            "select count(*) from information_schema.tables where table_schema = 'assetfs'"
        ).fetchone()[0]


def test_init_creates_a_store_and_is_idempotent(database_url, tmp_path, files):
    root = tmp_path / "new-store"
    first = run_cli(root, *init_args(database_url))
    assert first.stdout.decode().startswith("created "), first.stdout
    assert (root / "assetfs.toml").is_file()
    assert (root / "blobs").is_dir() and (root / "objects").is_dir()
    assert (root / "catalog.db").exists() == (database_url is None)
    if database_url:
        assert postgres_tables(database_url) >= len(TABLES)

    object_id = put_one(root, "b", str(write(files / "a.txt", "hello\n")))["id"]
    config = (root / "assetfs.toml").read_text()

    for args in (init_args(database_url), ["init"]):
        again = run_cli(root, *args)
        assert again.returncode == 0
        assert "already a store" in again.stdout.decode(), again.stdout
        assert again.stderr == b""
    assert (root / "assetfs.toml").read_text() == config
    assert cat(root, object_id) == b"hello\n", "a second init must keep what is stored"


def test_init_refuses_a_store_with_another_catalog(database_url, store_root):
    before = store_state(store_root)
    other = "postgresql://nobody@127.0.0.1:1/elsewhere"
    line = assert_error(run_cli(store_root, "init", "--database-url", other, check=None), 2)
    assert "already a store" in line
    assert store_state(store_root) == before


def test_init_refuses_a_non_empty_folder_that_is_not_a_store(database_url, tmp_path):
    root = tmp_path / "photos"
    write(root / "holiday.jpg", b"\xff\xd8\xff not really a jpeg")
    line = assert_error(run_cli(root, *init_args(database_url), check=None), 2)
    assert "not empty" in line
    assert sorted(path.name for path in root.iterdir()) == ["holiday.jpg"], "nothing may be created there"
    assert (root / "holiday.jpg").read_bytes() == b"\xff\xd8\xff not really a jpeg"
    if database_url:
        assert postgres_tables(database_url) == 0, "no catalog may be created for a refused init"


@pytest.mark.parametrize("where", ["missing", "empty", "unrelated", "file"])
@pytest.mark.parametrize("args", [
    ["ls"], ["ls", "--json"], ["put", "b", "SOURCE"], ["cat", UNKNOWN_ID], ["stat", UNKNOWN_ID],
    ["rm", UNKNOWN_ID], ["hold", "add", UNKNOWN_ID, "app"], ["stats"], ["fsck"],
], ids=lambda args: "-".join(args[:2]) if isinstance(args, list) else args)
def test_commands_on_a_path_that_is_not_a_store(tmp_path, where, args):
    source = write(tmp_path / "source.txt", "data\n")
    root = tmp_path / "not-a-store"
    if where == "empty":
        root.mkdir()
    elif where == "unrelated":
        write(root / "notes.txt", "mine\n")
        (root / "blobs").mkdir()
    elif where == "file":
        write(root, "a file, not a folder\n")
    before = file_tree(root) if root.is_dir() else None
    args = [str(source) if arg == "SOURCE" else arg for arg in args]
    line = assert_error(run_cli(root, *args, check=None), 2)
    assert "not an assetfs store" in line
    if where == "missing":
        assert not root.exists(), "a command on a missing store must not create it"
    elif where == "file":
        assert root.read_text() == "a file, not a folder\n"
    else:
        assert file_tree(root) == before


def test_store_from_the_environment(store_root, tmp_path, files):
    source = write(files / "env.txt", "from the environment\n")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()

    def run(*args: str, store_option: list[str] = []) -> subprocess.CompletedProcess:
        return subprocess.run([ASSETFS, *store_option, *args], capture_output=True, timeout=120, cwd=elsewhere,
                              env={**os.environ, "ASSETFS_STORE": str(store_root)})

    put = run("put", "env", str(source))
    assert put.returncode == 0, put.stderr
    [(object_id, where)] = put_lines(put)
    assert where == "env/env.txt"
    assert run("cat", object_id).stdout == b"from the environment\n"
    assert [record["id"] for record in ls_json(store_root)] == [object_id], "the put went to ASSETFS_STORE"
    assert list(elsewhere.iterdir()) == [], "nothing may land in the default ./assetfs-data"

    # --store wins over the environment
    missing = run("ls", store_option=["--store", str(tmp_path / "nowhere")])
    assert "not an assetfs store" in assert_error(missing, 2)


# put -----------------------------------------------------------------------------------------


def test_put_prints_one_line_per_file_named_by_its_base_name(store_root, files):
    a = write(files / "a.txt", "alpha\n")
    b = write(files / "sub" / "b.css", "body { color: red }\n")
    result = run_cli(store_root, "put", "web", str(a), str(b))
    assert result.stderr == b""
    pairs = put_lines(result)
    assert [where for _, where in pairs] == ["web/a.txt", "web/b.css"]
    (id_a, _), (id_b, _) = pairs
    assert id_a != id_b and str(uuid.UUID(id_a)) == id_a
    assert cat(store_root, id_a) == b"alpha\n"
    assert cat(store_root, id_b) == b"body { color: red }\n"
    assert stat_json(store_root, id_b)["names"] == ["b.css"]
    assert stat_json(store_root, id_b)["filename"] == "b.css"


def test_put_name_for_one_file(store_root, files):
    source = write(files / "upload.png", "not really a png\n")
    [(object_id, where)] = put_lines(run_cli(store_root, "put", "img", str(source), "--name", "logos/2024/logo.png"))
    assert where == "img/logos/2024/logo.png"
    info = stat_json(store_root, object_id)
    assert info["names"] == ["logos/2024/logo.png"] and info["name"] == "logos/2024/logo.png"
    assert [record["name"] for record in ls_json(store_root, "img")] == ["logos/2024/logo.png"]


def test_put_name_folder_for_several_files(store_root, files):
    sources = [str(write(files / name, name)) for name in ("one.txt", "two.txt", "three.txt")]
    pairs = put_lines(run_cli(store_root, "put", "docs", *sources, "--name", "manual/"))
    assert [where for _, where in pairs] == ["docs/manual/one.txt", "docs/manual/two.txt", "docs/manual/three.txt"]
    for (object_id, where), name in zip(pairs, ("one.txt", "two.txt", "three.txt")):
        assert stat_json(store_root, object_id)["names"] == [f"manual/{name}"]
        assert cat(store_root, object_id) == name.encode()


def test_put_name_without_slash_for_several_files_is_bad_input(store_root, files):
    sources = [str(write(files / name, name)) for name in ("one.txt", "two.txt")]
    line = assert_bad_input(store_root, "put", "docs", *sources, "--name", "manual")
    assert "'/'" in line
    assert ls_json(store_root) == []


def test_put_no_name(store_root, files):
    source = write(files / "avatar.bin", os.urandom(500))
    [(object_id, where)] = put_lines(run_cli(store_root, "put", "avatars", str(source), "--no-name"))
    assert where == f"avatars/{object_id}/avatar.bin"
    info = stat_json(store_root, object_id)
    assert info["names"] == [] and info["name"] is None and info["filename"] == "avatar.bin"
    record = put_one(store_root, "avatars", str(write(files / "other.bin", os.urandom(10))), "--no-name")
    assert record["name"] is None
    assert_error(run_cli(store_root, "put", "avatars", str(source), "--no-name", "--name", "x", check=None), 2)


def test_put_from_standard_input(store_root):
    data = os.urandom(100 * KIB) + b"\x00\r\n"
    [(object_id, where)] = put_lines(run_cli(store_root, "put", "in", "-", input=data))
    assert where == f"in/{object_id}/stdin"
    assert cat(store_root, object_id) == data
    assert stat_json(store_root, object_id)["size"] == len(data)

    [(named_id, where)] = put_lines(run_cli(store_root, "put", "in", "-", "--name", "piped/data.bin", input=b"piped"))
    assert where == "in/piped/data.bin"
    assert cat(store_root, named_id) == b"piped"
    assert stat_json(store_root, named_id)["names"] == ["piped/data.bin"]

    line = assert_bad_input(store_root, "put", "in", "-", "-", input=b"twice")
    assert "standard input" in line


def test_put_content_type(store_root, files):
    source = write(files / "data.txt", "plain words\n")
    record = put_one(store_root, "b", str(source), "--content-type", "application/x-custom+json")
    assert record["content_type"] == "application/x-custom+json"
    assert stat_json(store_root, record["id"])["content_type"] == "application/x-custom+json"
    detected = put_one(store_root, "b", str(write(files / "page.txt", "other words\n")))
    assert detected["content_type"] == "text/plain"


def test_put_expires_in(store_root, files):
    record = put_one(store_root, "tmp", str(write(files / "short.txt", "short-lived\n")), "--expires-in", "1d")
    info = stat_json(store_root, record["id"])
    assert info["expires_at"] is not None
    created = datetime.fromisoformat(info["created_at"])
    expires = datetime.fromisoformat(info["expires_at"])
    assert abs((expires - created).total_seconds() - 86400) < 60
    lasting = put_one(store_root, "tmp", str(write(files / "long.txt", "long-lived\n")))
    assert stat_json(store_root, lasting["id"])["expires_at"] is None


def test_put_metadata(store_root, files):
    record = put_one(store_root, "b", str(write(files / "m.txt", "meta\n")),
                     "--meta", "author=ana", "--meta", "query=a=b&c=d", "--meta", "empty=")
    assert stat_json(store_root, record["id"])["metadata"] == {"author": "ana", "query": "a=b&c=d", "empty": ""}
    assert ls_json(store_root)[0]["metadata"] == {"author": "ana", "query": "a=b&c=d", "empty": ""}


def test_put_json_and_dedup(store_root, files):
    data = os.urandom(5000)
    first = put_one(store_root, "one", str(write(files / "first.bin", data)))
    assert PUT_FIELDS <= first.keys()
    assert first["bucket"] == "one" and first["name"] == "first.bin"
    assert first["hash"] == b3(data) and first["size"] == len(data)
    assert first["deduplicated"] is False
    assert isinstance(first["content_type"], str) and "/" in first["content_type"]

    again = put_one(store_root, "one", str(write(files / "copy.bin", data)))
    assert again["deduplicated"] is True
    assert again["id"] == first["id"] and again["hash"] == first["hash"]
    assert again["name"] == "copy.bin"
    assert stat_json(store_root, first["id"])["names"] == ["copy.bin", "first.bin"]

    elsewhere = put_one(store_root, "two", str(files / "first.bin"))
    assert elsewhere["deduplicated"] is False and elsewhere["id"] != first["id"]
    assert elsewhere["hash"] == first["hash"]
    assert len(ls_json(store_root)) == 2


def test_put_a_folder_or_a_missing_file_stores_nothing(store_root, files):
    good = str(write(files / "good.txt", "good\n"))
    later = str(write(files / "later.txt", "later\n"))
    folder = files / "folder"
    write(folder / "inside.txt", "inside\n")
    assert "folder" in assert_bad_input(store_root, "put", "b", str(folder))
    assert "folder" in assert_bad_input(store_root, "put", "b", good, str(folder), later)
    assert "no such file" in assert_bad_input(store_root, "put", "b", good, str(files / "missing.txt"), later)
    assert ls_json(store_root) == []
    assert stats_json(store_root)["total"]["objects"] == 0


def test_put_a_bad_name_among_several_files_stores_nothing(store_root, files):
    good = str(write(files / "good.txt", "good\n"))
    named_like_an_id = str(write(files / UNKNOWN_ID, "named like an object id\n"))
    assert "object id" in assert_bad_input(store_root, "put", "b", good, named_like_an_id)
    # two sources that would get the same name: the second would silently take it from the first
    twin = str(write(files / "elsewhere" / "good.txt", "another good\n"))
    assert "both" in assert_bad_input(store_root, "put", "b", good, twin)
    # a name that is taken by a folder, after a good one
    put_one(store_root, "b", str(write(files / "x.txt", "x\n")), "--name", "taken/x.txt")
    fresh = str(write(files / "fresh.txt", "fresh\n"))
    assert "folder" in assert_bad_input(store_root, "put", "b", fresh, str(write(files / "taken", "t\n")))
    assert [record["name"] for record in ls_json(store_root)] == ["taken/x.txt"]


# reading -------------------------------------------------------------------------------------


def test_cat_writes_the_exact_bytes(store_root, files):
    big = os.urandom(3 * 1024 * KIB)
    small = bytes(range(256)) * 3 + b"\r\n\x00end"
    ids = [put_one(store_root, "bin", str(write(files / name, data)))["id"]
           for name, data in (("big.bin", big), ("small.bin", small), ("empty.bin", b""))]
    assert cat(store_root, ids[0]) == big
    assert cat(store_root, ids[1]) == small
    assert cat(store_root, ids[2]) == b""
    assert stat_json(store_root, ids[0])["size"] == 3 * 1024 * KIB


def test_cat_unknown_id_is_not_found(store_root):
    line = assert_error(run_cli(store_root, "cat", UNKNOWN_ID, check=None), 1)
    assert UNKNOWN_ID in line


def test_get_writes_a_file_and_does_not_overwrite_without_force(store_root, files, tmp_path):
    data = os.urandom(300 * KIB)
    object_id = put_one(store_root, "b", str(write(files / "photo.raw", data)))["id"]
    out = tmp_path / "out"
    out.mkdir()
    target = out / "copy.raw"

    result = run_cli(store_root, "get", object_id, "-o", str(target))
    assert target.read_bytes() == data
    assert result.stdout.decode() == f"{object_id}  {target}\n"

    target.write_bytes(b"mine, keep me")
    before = store_state(store_root)
    line = assert_error(run_cli(store_root, "get", object_id, "-o", str(target), check=None), 2)
    assert "--force" in line
    assert target.read_bytes() == b"mine, keep me"
    assert store_state(store_root) == before

    run_cli(store_root, "get", object_id, "-o", str(target), "--force")
    assert target.read_bytes() == data
    assert sorted(path.name for path in out.iterdir()) == ["copy.raw"], "no partial file may be left"

    assert_error(run_cli(store_root, "get", object_id, "-o", str(out), check=None), 2)
    assert_error(run_cli(store_root, "get", UNKNOWN_ID, "-o", str(out / "none"), check=None), 1)
    assert not (out / "none").exists()


def test_stat_and_ls_json_fields(store_root, files):
    record = put_one(store_root, "b", str(write(files / "f.txt", "fields\n")), "--name", "dir/f.txt")
    info = stat_json(store_root, record["id"])
    assert OBJECT_FIELDS <= info.keys(), OBJECT_FIELDS - info.keys()
    for key in PUT_FIELDS - {"deduplicated"}:
        assert info[key] == record[key], key
    assert info["filename"] == "f.txt"
    assert isinstance(info["names"], list) and info["names"] == ["dir/f.txt"]
    assert datetime.fromisoformat(info["created_at"]).tzinfo is not None
    assert info["holds"] == []

    [listed] = ls_json(store_root)
    assert OBJECT_FIELDS <= listed.keys(), OBJECT_FIELDS - listed.keys()
    assert listed == {key: value for key, value in info.items() if key != "holds"}

    plain = run_cli(store_root, "stat", record["id"]).stdout.decode()
    assert f"id:            {record['id']}" in plain.splitlines()
    assert '["dir/f.txt"]' in plain


def test_ls_bucket_lists_only_that_bucket(store_root, files):
    in_a = {put_one(store_root, "a", str(write(files / f"a{i}.txt", f"a {i}")))["id"] for i in range(3)}
    in_b = {put_one(store_root, "b", str(write(files / f"b{i}.txt", f"b {i}")))["id"] for i in range(2)}
    assert {record["id"] for record in ls_json(store_root, "a")} == in_a
    assert {record["id"] for record in ls_json(store_root, "b")} == in_b
    assert {record["id"] for record in ls_json(store_root)} == in_a | in_b
    assert ls_json(store_root, "never-used") == []
    plain = run_cli(store_root, "ls", "b").stdout.decode().splitlines()
    assert len(plain) == 2 and all(line.split()[-1].startswith("b/") for line in plain)
    assert {line.split()[0] for line in plain} == in_b


def test_ls_streams_many_objects(store_root, files):
    sources = [str(write(files / f"f{i:03}.txt", f"file number {i}\n")) for i in range(300)]
    pairs = put_lines(run_cli(store_root, "put", "many", *sources))
    assert len(pairs) == 300 and len({object_id for object_id, _ in pairs}) == 300
    plain = run_cli(store_root, "ls").stdout.decode().splitlines()
    assert len(plain) == 300
    listed = ls_json(store_root, "many")
    assert [record["id"] for record in listed] == sorted(object_id for object_id, _ in pairs)
    assert {record["name"] for record in listed} == {f"f{i:03}.txt" for i in range(300)}


# lifecycle -----------------------------------------------------------------------------------


def test_rm_then_restore(store_root, files):
    record = put_one(store_root, "b", str(write(files / "doc.txt", "keep me\n")), "--name", "docs/doc.txt")
    object_id = record["id"]
    assert run_cli(store_root, "rm", object_id).stdout.decode() == f"trashed {object_id}\n"
    assert object_id in assert_error(run_cli(store_root, "cat", object_id, check=None), 1)
    assert_error(run_cli(store_root, "stat", object_id, check=None), 1)
    assert ls_json(store_root) == []
    assert stats_json(store_root)["total"]["trashed_objects"] == 1
    assert_error(run_cli(store_root, "rm", object_id, check=None), 1)

    assert run_cli(store_root, "restore", object_id).stdout.decode() == f"restored {object_id}\n"
    assert cat(store_root, object_id) == b"keep me\n"
    assert stat_json(store_root, object_id)["names"] == ["docs/doc.txt"]
    assert [item["id"] for item in ls_json(store_root)] == [object_id]
    assert_error(run_cli(store_root, "restore", object_id, check=None), 1)


def test_rm_unknown_id_is_reported_and_the_others_are_trashed(store_root, files):
    first = put_one(store_root, "b", str(write(files / "1.txt", "one")))["id"]
    second = put_one(store_root, "b", str(write(files / "2.txt", "two")))["id"]
    result = run_cli(store_root, "rm", first, UNKNOWN_ID, second, check=None)
    line = assert_error(result, 1, stdout_empty=False)
    assert UNKNOWN_ID in line
    assert result.stdout.decode().splitlines() == [f"trashed {first}", f"trashed {second}"]
    assert ls_json(store_root) == []
    assert_error(run_cli(store_root, "cat", first, check=None), 1)
    assert_error(run_cli(store_root, "cat", second, check=None), 1)


def test_rm_with_a_bad_id_changes_nothing(store_root, files):
    object_id = put_one(store_root, "b", str(write(files / "1.txt", "one")))["id"]
    line = assert_bad_input(store_root, "rm", object_id, "not-a-uuid")
    assert "not-a-uuid" in line
    assert cat(store_root, object_id) == b"one"


def test_holds(store_root, files):
    object_id = put_one(store_root, "b", str(write(files / "h.txt", "held")), "--no-name")["id"]
    assert run_cli(store_root, "hold", "add", object_id, "billing").stdout.decode() == f"held {object_id} for billing\n"
    run_cli(store_root, "hold", "add", object_id, "app:42")
    assert stat_json(store_root, object_id)["holds"] == ["app:42", "billing"]
    assert '"billing"' in run_cli(store_root, "stat", object_id).stdout.decode()

    assert run_cli(store_root, "hold", "rm", object_id, "billing").stdout.decode() == (
        f"released {object_id} for billing\n")
    assert stat_json(store_root, object_id)["holds"] == ["app:42"]
    line = assert_error(run_cli(store_root, "hold", "rm", object_id, "billing", check=None), 1)
    assert "billing" in line
    assert stat_json(store_root, object_id)["holds"] == ["app:42"]
    assert_error(run_cli(store_root, "hold", "add", UNKNOWN_ID, "billing", check=None), 1)
    assert_bad_input(store_root, "hold", "add", object_id, "")


# stats -------------------------------------------------------------------------------------


def test_stats(store_root, files):
    shared = write(files / "shared.bin", os.urandom(100 * KIB))
    distinct = write(files / "distinct.bin", os.urandom(100 * KIB))
    put_one(store_root, "alpha", str(shared))
    put_one(store_root, "beta", str(shared))
    put_one(store_root, "alpha", str(distinct))

    result = stats_json(store_root)
    alpha, beta, total = result["buckets"]["alpha"], result["buckets"]["beta"], result["total"]
    assert (alpha["objects"], alpha["blobs"], alpha["logical_bytes"], alpha["physical_bytes"]) == (
        2, 2, 200 * KIB, 200 * KIB)
    assert (beta["objects"], beta["blobs"], beta["logical_bytes"], beta["physical_bytes"]) == (
        1, 1, 100 * KIB, 100 * KIB)
    assert total["objects"] == 3 and total["blobs"] == 2
    assert total["logical_bytes"] == 300 * KIB
    assert total["physical_bytes"] == 200 * KIB
    assert total["dedup_ratio"] == 1.5
    assert "dedup ratio: 1.50" in run_cli(store_root, "stats").stdout.decode()


# bad input -----------------------------------------------------------------------------------


BAD_BUCKETS = ["", "A", "Photos", "-x", ".x", "_x", "a" * 64, "a/b", "../a", "a b", "café", "a\\b", "a:b", "b*"]


def test_bad_bucket_names(populated, store_root):
    bad_input = BadInputs(store_root)
    for bucket in BAD_BUCKETS:
        # '--' so that names such as '-x' reach the bucket check instead of the option parser
        line = bad_input("put", "--", bucket, populated["source"])
        assert "bucket" in line, (bucket, line)
        assert "bucket" in bad_input("put", "--json", "--name", "n/", "--", bucket, "-", input=b"x"), bucket
        if bucket == "a/b":  # for ls, BUCKET/PATH: a lookup by name, of a bucket that does not exist
            assert "a/b" in assert_error(run_cli(store_root, "ls", "--json", "--", bucket, check=None), 1)
        else:
            assert "bucket" in bad_input("ls", "--json", "--", bucket), bucket
    bad_input.finish()


def test_edge_bucket_names_are_accepted(store_root, files):
    for index, bucket in enumerate(["a" * 63, "0", "a.b_c-d", "9lives"]):
        record = put_one(store_root, bucket, str(write(files / f"{index}.txt", f"edge {index}")))
        assert record["bucket"] == bucket
        assert [item["id"] for item in ls_json(store_root, bucket)] == [record["id"]]


def test_bad_names(populated, store_root):
    source = populated["source"]
    bad_names = [
        "", "a//b", "//", "a/../b", "..", "../escape", "a/./b", "x" * 256, "dir/" + "é" * 128,
        "a/" + "b" * 256 + "/c", UNKNOWN_ID, f"{UNKNOWN_ID}/x.txt",  # other spellings: tests/test_id_names.py
        "/".join(["d" * 200] * 21),
        "guide/readme.txt/below",  # a folder on the way is a file
        "guide",  # the name is a folder
    ]
    bad_input = BadInputs(store_root)
    for name in bad_names:
        bad_input("put", "docs", source, "--name", name)
    bad_input("put", "docs", "-", "--name", "a/../b", input=b"from stdin")
    # bad names reached as a folder for several files
    for folder in ("a//", "../", f"{UNKNOWN_ID}/", "x" * 256 + "/"):
        bad_input("put", "docs", source, source, "--name", folder)
    bad_input.finish()
    assert cat(store_root, populated["named"]) == b"read me\n"


BAD_IDS = ["not-a-uuid", "123", "", UNKNOWN_ID + "0", UNKNOWN_ID[:-1], "{" + UNKNOWN_ID + "}",
           "urn:uuid:" + UNKNOWN_ID, UNKNOWN_ID.replace("-", ""), "../../etc/passwd", " " + UNKNOWN_ID]


def test_bad_ids(populated, store_root, tmp_path):
    bad_input = BadInputs(store_root)
    for index, bad in enumerate(BAD_IDS):
        commands = [["cat", bad], ["rm", populated["named"], bad]]
        if index % 3 == 0:  # every command, for some of the bad ids (they share one parser)
            commands += [["stat", bad], ["stat", "--json", bad], ["get", bad, "-o", str(tmp_path / "got")],
                         ["rm", bad], ["restore", bad], ["restore", populated["trashed"], bad],
                         ["hold", "add", bad, "app"], ["hold", "rm", bad, "app"]]
        for args in commands:
            line = bad_input(*args)
            assert "object id" in line, (args, line)
    bad_input.finish()
    assert not (tmp_path / "got").exists()


def test_missing_source_file(populated, store_root, files):
    bad_input = BadInputs(store_root)
    line = bad_input("put", "b", str(files / "nope.txt"))
    assert "nope.txt" in line
    bad_input("put", "b", populated["source"], str(files / "nope.txt"))
    bad_input("put", "b", str(files / "nope.txt"), "-", input=b"stdin data")
    bad_input.finish()


def test_bad_expires_in(populated, store_root):
    bad_input = BadInputs(store_root)
    for value in ("soon", "1x", "-1d", "1d2", "", " ", "d", "1.5.d", "0s", "0"):
        line = bad_input("put", "b", populated["source"], "--expires-in", value)
        assert "expir" in line, (value, line)
    bad_input.finish()


def test_bad_content_type(populated, store_root):
    bad_input = BadInputs(store_root)
    for value in ("png", "image/", "/png", "image png", "image/png\nX-Evil: 1", "", "text//plain", "a/b/c"):
        line = bad_input("put", "b", populated["source"], "--content-type", value)
        assert "content type" in line, (value, line)
    bad_input.finish()


def test_bad_metadata(populated, store_root):
    bad_input = BadInputs(store_root)
    for value in ("novalue", "=value", "bad key=v", "k" * 129 + "=v", "ké=v", "-k=v", "a/b=c"):
        line = bad_input("put", "b", populated["source"], "--meta", value)
        assert "meta" in line, (value, line)
    bad_input("put", "b", populated["source"], "--meta", "big=" + "v" * (64 * KIB + 1))
    bad_input.finish()


def test_unknown_options_and_usage_errors(populated, store_root):
    bad_input = BadInputs(store_root)
    for args in (["put", "--bogus", "b", populated["source"]], ["--bogus", "ls"], ["ls", "--bogus"],
                 ["hold", "add", "--force", populated["held"], "app"], ["stat", "--nam", populated["named"]],
                 ["bogus-command"], ["put", "b"], ["cat"], ["hold", "rm", populated["held"]],
                 ["rm"], ["ls", "a", "b"], ["put", "b", populated["source"], "--name"]):
        bad_input(*args)
    bad_input.finish()


CONFIG_BREAKAGES = {
    "unknown top-level key": (lambda text: "bogus_key = 1\n" + text, "bogus_key"),
    "orphan_grace as a number": (lambda text: text.replace('orphan_grace = "1h"', "orphan_grace = 5"), "orphan_grace"),
    "bad duration": (lambda text: text.replace('orphan_grace = "1h"', 'orphan_grace = "soon"'), "orphan_grace"),
    "batch_size as a string": (lambda text: text.replace("batch_size = 500", 'batch_size = "many"'), "batch_size"),
    "dedupe as a string": (lambda text: text.replace("dedupe = true", 'dedupe = "yes"'), "dedupe"),
    "unknown bucket key": (lambda text: text + '\n[buckets.avatars]\ngrase = "30d"\n', "grase"),
    "bad bucket section": (lambda text: text + '\n[buckets.Avatars]\ngrace = "30d"\n', "Avatars"),
    "not TOML": (lambda text: text + "\nthis is = = not toml\n", "assetfs.toml"),
}


def test_bad_config_stops_every_command(populated, store_root):
    config = store_root / "assetfs.toml"
    original = config.read_text()
    before = store_state(store_root)
    every_command = [["ls"], ["put", "b", populated["source"]], ["cat", populated["named"]],
                     ["stat", populated["named"]], ["rm", populated["named"]], ["restore", populated["trashed"]],
                     ["hold", "add", populated["named"], "app"], ["hold", "rm", populated["held"], "app"],
                     ["stats"], ["fsck"], ["fsck", "--repair"], ["init"]]
    for breakage, (change, key) in CONFIG_BREAKAGES.items():
        broken = change(original)
        assert broken != original, breakage
        config.write_text(broken)
        try:
            tree = file_tree(store_root)
            commands = every_command if breakage == "orphan_grace as a number" else every_command[:3]
            for args in commands:
                line = assert_error(run_cli(store_root, *args, check=None), 2)
                assert key in line, (breakage, args, line)
                assert file_tree(store_root) == tree, (breakage, args)
            assert config.read_text() == broken, "a command must not rewrite a broken configuration"
        finally:
            config.write_text(original)
    assert store_state(store_root) == before


# fsck ----------------------------------------------------------------------------------------


def test_fsck_on_a_fresh_store(store_root):
    result = run_cli(store_root, "fsck")
    assert "clean" in result.stdout.decode().splitlines()[-1]
    assert result.stderr == b""
    summary = json.loads(run_cli(store_root, "fsck", "--json").stdout.decode().splitlines()[-1])
    assert summary["clean"] is True and summary["problems"] == 0 and summary["objects"] == 0


def test_fsck_after_cli_work_is_clean(populated, store_root):
    assert "clean" in run_cli(store_root, "fsck", "--verify-content").stdout.decode().splitlines()[-1]
    summary = json.loads(run_cli(store_root, "fsck", "--json").stdout.decode().splitlines()[-1])
    assert summary["clean"] is True and summary["problems"] == 0
    assert summary["objects"] == 3 and summary["blobs"] == 3
    assert "orphan" in assert_bad_input(store_root, "fsck", "--orphan-grace", "later")
