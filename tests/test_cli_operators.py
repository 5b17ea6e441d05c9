"""What an operator meets first (issue 8, "First contact"): which store a command uses and
why, `--version`, `get -o -`, `put -r`, lookup by name, `hold ls`, a `trash purge` that asks
what to purge, `rm` of a trashed id, the name `trash ls` shows, ISO times in every JSON, and
the progress bar's bytes and rate. Every test runs the real `assetfs` command.
"""

import json
import os
import pty
import select
import subprocess
from datetime import datetime
from importlib.metadata import version
from pathlib import Path

import pytest

from cas.store import Store
from conftest import ASSETFS, run_cli
from helpers import snapshot
from mounting import unmount
from test_cli import assert_error, ls_json, put_json, put_lines, put_one, stat_json, write

SYSTEM_DEFAULT = Path("/var/lib/assetfs")  # cas/locate.py


def bare(*args: str, cwd: Path, env: dict[str, str], check: int | None = 0) -> subprocess.CompletedProcess:
    """`assetfs ARGS` without --store, in `cwd`, with exactly the store settings in `env`."""
    environment = {key: value for key, value in os.environ.items() if key not in ("ASSETFS_STORE", "ASSETFS_CONFIG")}
    result = subprocess.run([ASSETFS, *args], capture_output=True, timeout=120, cwd=cwd, env={**environment, **env})
    if check is not None:
        assert result.returncode == check, result.stderr.decode()
    return result


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


# which store ---------------------------------------------------------------------------------


def test_system_config_names_the_store_for_commands_from_any_folder(store_root, tmp_path, elsewhere):
    config = write(tmp_path / "assetfs.toml", f'store = "{store_root}"\n')
    source = write(tmp_path / "a.txt", "via the system configuration\n")
    [(object_id, where)] = put_lines(bare("put", "docs", str(source), cwd=elsewhere,
                                          env={"ASSETFS_CONFIG": str(config)}))
    assert where == "docs/a.txt"
    assert [record["id"] for record in ls_json(store_root)] == [object_id]
    assert list(elsewhere.iterdir()) == []

    # ASSETFS_STORE beats the configuration, --store beats both
    other = tmp_path / "other"
    run_cli(other, "init")
    env = {"ASSETFS_CONFIG": str(config), "ASSETFS_STORE": str(other)}
    assert bare("ls", cwd=elsewhere, env=env).stdout == b""
    assert object_id in bare("--store", str(store_root), "ls", cwd=elsewhere, env=env).stdout.decode()


@pytest.mark.parametrize("source", ["option", "environment", "system config"])
def test_not_a_store_names_the_path_and_why_and_does_not_suggest_init(tmp_path, elsewhere, source):
    missing = tmp_path / "my-store"  # the user meant a store here; there is none
    config = tmp_path / "assetfs.toml"
    if source == "option":
        result = bare("--store", str(missing), "ls", cwd=elsewhere, env={"ASSETFS_CONFIG": str(config)}, check=None)
        why = "--store"
    elif source == "environment":
        result = bare("ls", cwd=elsewhere, env={"ASSETFS_STORE": str(missing), "ASSETFS_CONFIG": str(config)},
                      check=None)
        why = "ASSETFS_STORE"
    else:
        write(config, f'store = "{missing}"\n')
        result = bare("ls", cwd=elsewhere, env={"ASSETFS_CONFIG": str(config)}, check=None)
        why = str(config)
    line = assert_error(result, 2)
    assert f"{missing} is not an assetfs store" in line and "no such folder" in line and why in line, line
    assert "init" not in line, "a mistyped store must not be answered with 'create a new one'"
    assert not missing.exists() and list(elsewhere.iterdir()) == []


def test_an_empty_store_or_mountpoint_is_refused_not_taken_for_another(store_root, tmp_path, elsewhere):
    """`--store "$UNSET"`, `ASSETFS_STORE=` and `mount ""`/`umount ""` are one line (exit 2)
    that say the value is empty; none acts on the store the configuration names or on the
    current folder (an empty mountpoint had mounted the store over it)."""
    config = write(tmp_path / "assetfs.toml", f'store = "{store_root}"\n')
    before = snapshot_of(store_root)
    attempts = [(["--store", "", "ls"], {}), (["--store", " ", "init"], {}), (["ls"], {"ASSETFS_STORE": ""}),
                (["umount", ""], {}), (["mount", ""], {}), (["mount", "", "--read-only"], {"ASSETFS_STORE": ""})]
    try:
        for args, env in attempts:
            line = assert_error(bare(*args, cwd=elsewhere, env={"ASSETFS_CONFIG": str(config), **env}, check=None), 2)
            assert "is empty" in line and str(elsewhere) not in line, (args, line)
    finally:
        unmount(elsewhere)  # what a mount on the current folder would have left
    assert list(elsewhere.iterdir()) == [] and snapshot_of(store_root) == before


def snapshot_of(root: Path) -> dict:
    with Store.open(root, read_only=True) as store:
        return snapshot(store)


def test_without_any_setting_the_store_is_the_system_default(tmp_path, elsewhere):
    if SYSTEM_DEFAULT.exists():
        pytest.skip(f"{SYSTEM_DEFAULT} exists on this machine")
    line = assert_error(bare("ls", cwd=elsewhere, env={"ASSETFS_CONFIG": str(tmp_path / "none.toml")}, check=None), 2)
    assert f"{SYSTEM_DEFAULT} is not an assetfs store" in line and "the default" in line, line
    assert "--store" in line and "ASSETFS_STORE" in line and "none.toml" in line, line
    assert list(elsewhere.iterdir()) == [], "nothing may land in the current folder"


def test_a_store_of_the_default_kind_is_used_from_the_current_folder_no_more(tmp_path, elsewhere):
    """The old default, ./assetfs-data, is no longer picked up by accident."""
    if SYSTEM_DEFAULT.exists():
        pytest.skip(f"{SYSTEM_DEFAULT} exists on this machine")
    run_cli(elsewhere / "assetfs-data", "init")
    result = bare("ls", cwd=elsewhere, env={"ASSETFS_CONFIG": str(tmp_path / "none.toml")}, check=None)
    assert f"{SYSTEM_DEFAULT} is not an assetfs store" in assert_error(result, 2)


@pytest.mark.parametrize("text, complaint", [
    ('store = "relative/path"\n', "absolute path"),
    ("store = 3\n", "absolute path"),
    ('stor = "/var/lib/assetfs"\n', "unknown key 'stor'"),
    ("store = \n", "not valid TOML"),
])
def test_bad_system_config_is_one_line_naming_the_problem(tmp_path, elsewhere, text, complaint):
    config = write(tmp_path / "assetfs.toml", text)
    line = assert_error(bare("ls", cwd=elsewhere, env={"ASSETFS_CONFIG": str(config)}, check=None), 2)
    assert str(config) in line and complaint in line, line


def test_init_creates_the_store_the_system_config_names(tmp_path, elsewhere):
    store = tmp_path / "srv" / "assets"
    config = write(tmp_path / "assetfs.toml", f'store = "{store}"\n')
    out = bare("init", cwd=elsewhere, env={"ASSETFS_CONFIG": str(config)}).stdout.decode()
    assert f"created {store}" in out
    assert (store / "assetfs.toml").is_file() and list(elsewhere.iterdir()) == []


# --version, get -o - -------------------------------------------------------------------------


def test_version(elsewhere):
    result = bare("--version", cwd=elsewhere, env={})
    assert result.stdout.decode() == f"assetfs {version('assetfs')}\n"


def test_get_to_standard_output(store_root, tmp_path, elsewhere):
    data = os.urandom(300_000)
    record = put_one(store_root, "media", str(write(tmp_path / "blob.bin", data)))
    result = subprocess.run([ASSETFS, "--store", str(store_root), "get", record["id"], "-o", "-"],
                            capture_output=True, timeout=120, cwd=elsewhere)
    assert result.returncode == 0 and result.stderr == b""
    assert result.stdout == data
    assert list(elsewhere.iterdir()) == [], "no file named '-' (nor a partial one)"


# put -r --------------------------------------------------------------------------------------


def test_put_recursive_names_files_by_their_relative_path(store_root, tmp_path):
    tree = tmp_path / "shoot"
    write(tree / "day1" / "img040.jpg", "first img040\n")
    write(tree / "day2" / "img040.jpg", "second img040\n")
    write(tree / "day2" / "raw" / "img041.cr2", "raw\n")
    write(tree / "notes.txt", "notes\n")
    single = write(tmp_path / "cover.txt", "cover\n")
    records = put_json(store_root, "photos", "-r", str(tree), str(single))
    assert [record["name"] for record in records] == [
        "shoot/notes.txt", "shoot/day1/img040.jpg", "shoot/day2/img040.jpg", "shoot/day2/raw/img041.cr2", "cover.txt"]
    by_name = {record["name"]: record for record in records}
    assert run_cli(store_root, "cat", by_name["shoot/day2/img040.jpg"]["id"]).stdout == b"second img040\n"
    assert stat_json(store_root, by_name["shoot/day1/img040.jpg"]["id"])["filename"] == "img040.jpg"

    # into a folder of the bucket's tree
    again = put_json(store_root, "photos", "-r", str(tree / "day1"), "--name", "2024/")
    assert [record["name"] for record in again] == ["2024/day1/img040.jpg"]
    assert again[0]["id"] == by_name["shoot/day1/img040.jpg"]["id"] and again[0]["deduplicated"]


def test_put_recursive_bad_input_stores_nothing(store_root, tmp_path):
    tree = tmp_path / "tree"
    write(tree / "a.txt", "a\n")
    (tmp_path / "empty").mkdir()
    (tree / "link").symlink_to(tmp_path / "empty")
    before = _state(store_root)
    for args, complaint in [
        (["photos", str(tree)], "put -r"),  # a folder without -r
        (["photos", "-r", str(tmp_path / "empty")], "empty"),
        (["photos", "-r", str(tree)], "link to a folder"),
        (["photos", "-r", str(tree / "a.txt"), "--name", "one-name"], "folder ending in '/'"),
    ]:
        line = assert_error(run_cli(store_root, "put", *args, check=None), 2)
        assert complaint in line, (args, line)
    assert _state(store_root) == before


def _state(root: Path) -> dict:
    with Store.open(root) as store:
        return snapshot(store)


# lookup by name ------------------------------------------------------------------------------


@pytest.fixture
def named_tree(store_root, tmp_path) -> dict[str, str]:
    files = {"site/logo.png": "logo", "site/css/main.css": "css", "site/css/print.css": "print",
             "sitemap.xml": "map", "other/readme.txt": "readme"}
    ids = {}
    for name, content in files.items():
        ids[name] = put_one(store_root, "web", str(write(tmp_path / "src" / name, content)), "--name", name)["id"]
    return ids


def test_stat_by_name(store_root, named_tree):
    by_name = json.loads(run_cli(store_root, "stat", "web/site/css/main.css", "--json").stdout)
    assert by_name["id"] == named_tree["site/css/main.css"] and by_name["name"] == "site/css/main.css"
    plain = run_cli(store_root, "stat", "web/sitemap.xml").stdout.decode()
    assert f"id:            {named_tree['sitemap.xml']}" in plain

    assert "folder" in assert_error(run_cli(store_root, "stat", "web/site", check=None), 1)
    assert "web/site/nope.png" in assert_error(run_cli(store_root, "stat", "web/site/nope.png", check=None), 1)
    assert_error(run_cli(store_root, "stat", "nobucket/x", check=None), 1)
    assert "object id" in assert_error(run_cli(store_root, "stat", "web/../x", check=None), 2)


def test_ls_by_folder_lists_the_names_under_it_in_name_order(store_root, named_tree):
    listed = ls_json(store_root, "web/site/")
    assert [(record["name"], record["id"]) for record in listed] == [
        ("site/css/main.css", named_tree["site/css/main.css"]),
        ("site/css/print.css", named_tree["site/css/print.css"]),
        ("site/logo.png", named_tree["site/logo.png"])]
    plain = run_cli(store_root, "ls", "web/site/css").stdout.decode().splitlines()
    assert [line.split()[-1] for line in plain] == ["web/site/css/main.css", "web/site/css/print.css"]
    assert [record["name"] for record in ls_json(store_root, "web/")] == [
        "other/readme.txt", "site/css/main.css", "site/css/print.css", "site/logo.png", "sitemap.xml"]
    assert [record["name"] for record in ls_json(store_root, "web/sitemap.xml")] == ["sitemap.xml"]
    assert_error(run_cli(store_root, "ls", "web/nothing/", check=None), 1)
    assert_error(run_cli(store_root, "ls", "web/sitemap.xml/", check=None), 1)
    assert_error(run_cli(store_root, "ls", "Web/site/", check=None), 2)


# holds, trash, rm ----------------------------------------------------------------------------


def test_hold_ls(store_root, tmp_path):
    first = put_one(store_root, "docs", str(write(tmp_path / "a.txt", "a\n")))["id"]
    second = put_one(store_root, "docs", str(write(tmp_path / "b.txt", "b\n")))["id"]
    run_cli(store_root, "hold", "add", first, "billing")
    run_cli(store_root, "hold", "add", first, "cms")
    run_cli(store_root, "hold", "add", second, "cms")

    def holds(*args: str) -> list[tuple[str, str]]:
        lines = run_cli(store_root, "hold", "ls", "--json", *args).stdout.decode().splitlines()
        records = [json.loads(line) for line in lines]
        for record in records:
            assert datetime.fromisoformat(record["created_at"]).tzinfo is not None
            assert record["bucket"] == "docs"
        return [(record["object_id"], record["owner"]) for record in records]

    assert holds() == [(first, "billing"), (first, "cms"), (second, "cms")]
    assert holds(first) == [(first, "billing"), (first, "cms")]
    assert holds("--owner", "cms") == [(first, "cms"), (second, "cms")]
    assert holds(second, "--owner", "billing") == []
    plain = run_cli(store_root, "hold", "ls", second).stdout.decode().split()
    assert plain[0] == second and plain[-1] == "cms"
    assert "object id" in assert_error(run_cli(store_root, "hold", "ls", "nope", check=None), 2)


def test_trash_purge_asks_what_to_purge(store_root, tmp_path):
    object_id = put_one(store_root, "docs", str(write(tmp_path / "a.txt", "a\n")))["id"]
    run_cli(store_root, "rm", object_id)
    before = _state(store_root)
    assert "--all" in assert_error(run_cli(store_root, "trash", "purge", check=None), 2)
    assert_error(run_cli(store_root, "trash", "purge", "--all", "--older-than", "1d", check=None), 2)
    assert _state(store_root) == before, "a refused purge purges nothing"
    run_cli(store_root, "trash", "purge", "--older-than", "1d")
    assert object_id in run_cli(store_root, "trash", "ls").stdout.decode(), "deleted just now: kept"
    report = json.loads(run_cli(store_root, "trash", "purge", "--all", "--json").stdout)
    assert report["passes"][0]["counts"] == {"purged": 1}
    assert run_cli(store_root, "trash", "ls").stdout == b""


def test_rm_stat_cat_get_of_a_trashed_id_say_it_is_in_the_trash(store_root, tmp_path):
    object_id = put_one(store_root, "docs", str(write(tmp_path / "a.txt", "a\n")))["id"]
    run_cli(store_root, "rm", object_id)
    line = assert_error(run_cli(store_root, "rm", object_id, check=None), 1)
    assert "in the trash" in line and f"restore {object_id}" in line, line
    for reading in (["stat", object_id], ["cat", object_id], ["get", object_id, "-o", str(tmp_path / "out")],
                    ["url", object_id]):  # and so do the read commands, with rm's exit code
        line = assert_error(run_cli(store_root, *reading, check=None), 1)
        assert "in the trash" in line and f"restore {object_id}" in line, (reading, line)
    assert not (tmp_path / "out").exists()
    live = put_one(store_root, "docs", str(write(tmp_path / "b.txt", "b\n")))["id"]
    line = assert_error(run_cli(store_root, "restore", live, check=None), 1)
    assert "live" in line, line


def test_trash_ls_shows_the_name_restore_gives_back(store_root, tmp_path):
    named = put_one(store_root, "docs", str(write(tmp_path / "a.txt", "a\n")), "--name", "guide/intro.txt")["id"]
    taken = put_one(store_root, "docs", str(write(tmp_path / "b.txt", "b\n")), "--name", "guide/other.txt")["id"]
    run_cli(store_root, "rm", named, taken)
    # another object takes the second name meanwhile: its restore will leave it without one
    put_one(store_root, "docs", str(write(tmp_path / "c.txt", "c\n")), "--name", "guide/other.txt")
    lines = run_cli(store_root, "trash", "ls", "docs").stdout.decode().splitlines()
    assert lines[0].startswith(named) and lines[0].endswith("  docs/guide/intro.txt"), lines
    assert lines[1].startswith(taken) and lines[1].endswith(f"  docs/{taken}/b.txt"), lines
    records = [json.loads(line) for line in run_cli(store_root, "trash", "ls", "--json").stdout.decode().splitlines()]
    assert [(record["name"], record["names"]) for record in records] == [("guide/intro.txt", ["guide/intro.txt"]),
                                                                         (None, [])]
    run_cli(store_root, "restore", named)
    assert stat_json(store_root, named)["names"] == ["guide/intro.txt"]


# JSON times, the progress bar ----------------------------------------------------------------


def test_gc_json_times_are_iso_8601(store_root):
    report = json.loads(run_cli(store_root, "gc", "--json").stdout)
    assert isinstance(report["now"], str) and datetime.fromisoformat(report["now"]).tzinfo is not None
    purge = json.loads(run_cli(store_root, "trash", "purge", "--all", "--json").stdout)
    assert datetime.fromisoformat(purge["now"]).tzinfo is not None


def test_progress_bar_shows_bytes_and_rate_on_a_terminal(store_root, tmp_path):
    sources = [str(write(tmp_path / "many" / f"f{index:02d}.bin", os.urandom(40_000)))
               for index in range(30)]  # more than 20 files: the bar shows
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen([ASSETFS, "--store", str(store_root), "put", "bulk", *sources],
                                   stdout=subprocess.PIPE, stderr=terminal, stdin=subprocess.DEVNULL)
        os.close(terminal)
        seen = b""
        while True:
            ready, _, _ = select.select([controller], [], [], 60)
            assert ready, "the put printed nothing on its terminal for 60 s"
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the put closed its terminal
                break
            if not chunk:
                break
            seen += chunk
        assert process.wait(timeout=60) == 0
        assert len(process.stdout.read().decode().splitlines()) == 30
        process.stdout.close()
    finally:
        os.close(controller)
    text = seen.decode()
    assert "/ 1.1 MiB" in text, text  # bytes done of the total (30 × 40,000 bytes)
    assert "/s" in text and "B/s" in text, text  # the rate
    # nothing without a terminal
    assert run_cli(store_root, "put", "bulk2", *sources).stderr == b""
