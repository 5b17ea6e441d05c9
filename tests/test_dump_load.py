"""`assetfs dump` / `assetfs load`: a store with names, hardlinks, holds, trash, rules and
tokens moves from SQLite to PostgreSQL and back through the portable stream; fsck is clean,
every object reads back, and names, holds, trash and tokens are equal (the dump of the
moved catalog is the dump of the original)."""

import json
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from cas import dump as dumping
from cas import names, tokens
from cas.store import Store
from tests.conftest import fresh_database, run_cli

RULE = "select 1 from objects where id = :id and metadata like '%keep%'"


@pytest.fixture
def fresh_postgres() -> Iterator:
    """Makes fresh PostgreSQL databases (an empty catalog each); dropped afterwards."""
    with ExitStack() as made:
        yield lambda: made.enter_context(fresh_database())


@pytest.fixture
def postgres_url(fresh_postgres) -> str:
    return fresh_postgres()


def set_database(root: Path, url: str | None) -> None:
    """Point the store's assetfs.toml at another catalog (what an operator edits to move it)."""
    config = root / "assetfs.toml"
    lines = [line for line in config.read_text().splitlines() if not line.startswith("database_url")]
    if url is not None:
        lines.insert(1, f"database_url = {json.dumps(url)}")
    config.write_text("\n".join(lines) + "\n")


def populate(store: Store, tmp_path: Path) -> dict[str, bytes]:
    """Objects with names (nested, a hardlink, a deleted name's node), holds, trash, a
    token: what a store in use holds. Returns the content of every object by id."""
    contents = {}
    for index in range(12):
        source = tmp_path / f"file-{index}.bin"
        source.write_bytes(f"content {index % 8} ".encode() * (500 + index))
        bucket = "photos" if index % 2 else "docs"
        result = store.put(bucket, source, name=f"year/{index % 3}/file-{index}.bin" if index % 4 else None,
                           metadata={"note": "keep" if index % 3 == 0 else "drop"})
        contents[result.object.id] = source.read_bytes()
    ids = list(contents)
    store.hold(ids[1], "app-1")
    store.hold(ids[1], "app-2")
    store.hold(ids[5], "cms")
    store.delete(ids[2])  # in the trash, with its name
    store.delete(ids[4])  # in the trash, without a name

    def hardlink(tx) -> None:  # a second name for a file node, as `ln` in the mount makes
        root = names.bucket_root(tx, "photos")
        year = names.lookup(tx, root, "year")["id"]
        folder = names.lookup(tx, year, "1")["id"]
        node = names.lookup(tx, folder, "file-1.bin")["id"]
        names.link(tx, node, year, "also-file-1.bin", time.time())

    store.catalog.run(hardlink)
    scratch = tmp_path / "scratch.bin"
    scratch.write_bytes(b"a name that goes away")
    gone = store.put("docs", scratch, name="scratch/gone.bin").object
    contents[gone.id] = scratch.read_bytes()
    store.catalog.run(lambda tx: names.unbind_object(tx, gone.id))  # its node ids are used up
    tokens.create(store.catalog, ["photos"], True, False, None)
    return contents


def dump_lines(root: Path, *options: str) -> list[dict]:
    out = run_cli(root, "dump", "--pause-sweep", "0", *options).stdout.decode()
    return [json.loads(line) for line in out.splitlines()]


def comparable(lines: list[dict]) -> list:
    """A dump without what says when and from where it was taken."""
    header = {key: value for key, value in lines[0].items() if key not in ("taken_at", "source")}
    return [header, *lines[1:]]


def check_moved(root: Path, contents: dict[str, bytes], expected: list[dict]) -> None:
    run_cli(root, "fsck", "--verify-content")  # clean: exit 0
    with Store.open(root) as store:
        for object_id, content in contents.items():
            info = store.catalog.run(lambda tx: tx.one("select bucket, filename, deleted_at from objects "
                                                       "where id = :id", {"id": object_id}), write=False)
            if info["deleted_at"] is None:
                assert store.open_object(object_id).read() == content
            else:
                assert store.tree.alias_path(info["bucket"], object_id, info["filename"]).read_bytes() == content
    assert comparable(dump_lines(root)) == comparable(expected)


def test_sqlite_to_postgres_and_back(tmp_path: Path, postgres_url: str) -> None:
    root = tmp_path / "store"
    store, _ = Store.init(root)
    config = root / "assetfs.toml"
    config.write_text(config.read_text() + f"\n[buckets.docs]\nrules = [{json.dumps(RULE)}]\n")
    with Store.open(root) as store:
        contents = populate(store, tmp_path)
    before = dump_lines(root)
    assert before[0]["source"] == "sqlite" and before[-1]["end"]["holds"] == 3
    listing = run_cli(root, "ls", "photos/year/", "--json").stdout
    held = run_cli(root, "hold", "ls", "--json").stdout
    trashed = run_cli(root, "trash", "ls", "--json").stdout
    dump_file = tmp_path / "catalog.jsonl"
    run_cli(root, "dump", "-o", str(dump_file), "--pause-sweep", "0")
    assert dump_file.stat().st_mode & 0o777 == 0o600

    set_database(root, postgres_url)  # the move: same folder, the catalog in PostgreSQL
    loaded = run_cli(root, "load", str(dump_file))
    assert b"loaded store" in loaded.stdout and loaded.stderr == b""  # same settings: nothing to say
    check_moved(root, contents, before)
    assert run_cli(root, "ls", "photos/year/", "--json").stdout == listing
    assert run_cli(root, "hold", "ls", "--json").stdout == held
    assert run_cli(root, "trash", "ls", "--json").stdout == trashed
    source = tmp_path / "new.bin"
    source.write_bytes(b"after the move")
    run_cli(root, "put", "docs", str(source), "--name", "new/after.bin")
    with Store.open(root) as store:  # node ids are never reused: the new ones follow the dumped sequence
        newest = store.catalog.run(lambda tx: tx.value("select max(id) as id from nodes"), write=False)
    assert newest > before[0]["node_sequence"]

    back = tmp_path / "catalog-back.jsonl"
    run_cli(root, "dump", "-o", str(back), "--pause-sweep", "0")
    moved = [json.loads(line) for line in back.read_text().splitlines()]
    assert moved[0]["source"] == "postgres"
    set_database(root, None)
    for leftover in root.glob("catalog.db*"):
        leftover.unlink()
    run_cli(root, "load", str(back))
    check_moved(root, {**contents}, moved)


def test_load_into_a_catalog_that_is_not_empty_is_refused(store: Store, tmp_path: Path) -> None:
    source = tmp_path / "a.bin"
    source.write_bytes(b"already here")
    store.put("docs", source, name="a.bin")
    dumped = tmp_path / "dump.jsonl"
    run_cli(store.root, "dump", "-o", str(dumped), "--pause-sweep", "0")
    before = dump_lines(store.root)
    result = run_cli(store.root, "load", str(dumped), check=2)
    message = result.stderr.decode()
    assert "is not empty (1 buckets, 1 blobs, 1 objects" in message and message.count("\n") == 1
    assert comparable(dump_lines(store.root)) == comparable(before)


@pytest.mark.parametrize("damage", ["truncated", "not json", "other schema", "bad column"])
def test_a_damaged_dump_loads_nothing(store: Store, tmp_path: Path, damage: str, fresh_postgres) -> None:
    source = tmp_path / "a.bin"
    source.write_bytes(b"to move")
    store.put("docs", source, name="a.bin")
    lines = run_cli(store.root, "dump", "--pause-sweep", "0").stdout.decode().splitlines()
    if damage == "truncated":
        lines = lines[:-2]
    elif damage == "not json":
        lines[2] = lines[2][:-5]
    elif damage == "other schema":
        lines[0] = json.dumps({**json.loads(lines[0]), "schema_version": 3})
    else:
        record = json.loads(lines[3])
        record["row"]["id; drop table objects"] = "x"
        lines[3] = json.dumps(record)
    target = tmp_path / "target"
    Store.init(target, database_url=store.config.database_url and fresh_postgres())[0].close()
    files_before = sorted(path.name for path in target.iterdir())
    identity = (target / "store-id").read_text()
    result = run_cli(target, "load", "-", input="\n".join(lines).encode() + b"\n", check=2)
    assert result.stderr.decode().count("\n") == 1 and "nothing was loaded" in result.stderr.decode()
    assert (target / "store-id").read_text() == identity
    assert sorted(path.name for path in target.iterdir()) == files_before
    assert dump_lines(target)[-1]["end"] == {table: 0 for table in dump_lines(target)[-1]["end"]}


@pytest.mark.parametrize(("table", "field", "value"), [
    ("blobs", "hash", "ABC123"),
    ("objects", "id", "not-an-id"),
    ("objects", "size", -5),
    ("objects", "filename", ".."),
    ("nodes", "kind", "door"),
    ("entries", "name", "a/../../b"),
])
def test_a_bad_value_in_a_row_loads_nothing(store: Store, tmp_path: Path, fresh_postgres, table: str, field: str,
                                            value: object) -> None:
    """Every value of a row is checked as put checks its input: one line that names the line,
    the table's row and the field; exit 2; nothing loaded."""
    for index in range(2):
        source = tmp_path / f"{index}.bin"
        source.write_bytes(f"to move {index}".encode())
        store.put("docs", source, name=f"dir/{index}.bin")
    records = [json.loads(line) for line in run_cli(store.root, "dump", "--pause-sweep", "0").stdout.splitlines()]
    number, record = [(number, record) for number, record in enumerate(records, start=1)
                      if record.get("table") == table][-1]  # the table's last row
    record["row"][field] = value
    row = sum(other.get("table") == table for other in records)
    target = tmp_path / "target"
    Store.init(target, database_url=store.config.database_url and fresh_postgres())[0].close()
    lines = "".join(json.dumps(record) + "\n" for record in records).encode()
    result = run_cli(target, "load", "-", input=lines, check=2)
    message = result.stderr.decode()
    assert message.count("\n") == 1 and "unexpected" not in message, message
    assert f"line {number} of the dump ({table} row {row}), field {field}:" in message, message
    assert dump_lines(target)[-1]["end"] == {table: 0 for table in dumping.TABLE_NAMES}


@pytest.mark.parametrize("sequence", [-5, "12", 1.5, None])
def test_a_bad_node_sequence_loads_nothing(store: Store, tmp_path: Path, fresh_postgres, sequence: object) -> None:
    records = [json.loads(line) for line in run_cli(store.root, "dump", "--pause-sweep", "0").stdout.splitlines()]
    records[0]["node_sequence"] = sequence
    target = tmp_path / "target"
    Store.init(target, database_url=store.config.database_url and fresh_postgres())[0].close()
    lines = "".join(json.dumps(record) + "\n" for record in records).encode()
    message = run_cli(target, "load", "-", input=lines, check=2).stderr.decode()
    assert message.count("\n") == 1 and "node_sequence" in message, message


def test_the_dump_is_one_snapshot_while_writers_go_on(store: Store, tmp_path: Path) -> None:
    """A put that commits while the dump is between its tables is not in the dump, which
    stays whole (its object's blob row would be missing otherwise): one snapshot. The put
    does not wait for the dump."""
    for index in range(3):
        source = tmp_path / f"old-{index}.bin"
        source.write_bytes(f"before the dump {index}".encode())
        store.put("docs", source, name=f"old-{index}.bin")
    fresh = tmp_path / "fresh.bin"
    fresh.write_bytes(b"committed while the dump runs")
    lines: list[str] = []
    committed: list[str] = []

    def write(line: str) -> None:
        lines.append(line)
        if not committed and json.loads(line).get("table") == "blobs":  # blobs are dumped, objects not yet
            writer = threading.Thread(target=lambda: committed.append(store.put("docs", fresh, name="new.bin").object.id))
            writer.start()
            writer.join(60)

    dumping.dump(store, write, pause_for=None)
    assert committed, "the put waited for the dump"
    records = [json.loads(line) for line in lines]
    assert committed[0] not in "".join(lines)
    rows = [record for record in records if "table" in record]
    assert records[-1]["end"] == {table: sum(record["table"] == table for record in rows)
                                  for table in dumping.TABLE_NAMES}
    assert records[-1]["end"]["objects"] == 3
