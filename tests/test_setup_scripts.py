"""scripts/start and its helpers in scripts/lib (issue 8, "First contact"): `assetfs` on PATH,
the main job's packages apart from the test stack's, and a tour that never changes a user's
data, however often it runs. Run for real with bash, against real stores on both catalogs.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest

from cas.store import Store
from conftest import ASSETFS, run_cli
from helpers import snapshot
from test_cli import put_one, stat_json, write

REPO = Path(__file__).resolve().parent.parent
SETUP = REPO / "scripts" / "lib" / "setup.sh"
STORE = REPO / "scripts" / "lib" / "store.sh"
TOUR = REPO / "scripts" / "lib" / "tour.sh"


def bash(script: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", f"set -euo pipefail\n{script}"], capture_output=True, timeout=120,
                          env={**os.environ, **(env or {})}, cwd=cwd)


def test_ensure_on_path_links_assetfs_so_bare_commands_work_from_any_folder(tmp_path, store_root):
    bin_dir = tmp_path / "bin"
    result = bash(f"source {SETUP}; ensure_on_path", env={"ASSETFS_BIN_DIR": str(bin_dir)})
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode() == "assetfs\n", "what the user types"
    link = bin_dir / "assetfs"
    assert link.is_symlink() and os.readlink(link) == str(REPO / ".venv" / "bin" / "assetfs")
    assert link.resolve() == Path(ASSETFS).resolve()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "ASSETFS_STORE": str(store_root)}
    listed = bash("assetfs ls --json && assetfs --version", env=env, cwd=elsewhere)
    assert listed.returncode == 0, listed.stderr.decode()
    assert listed.stdout.decode().startswith("assetfs ")

    # idempotent, and a file that is not a link is never replaced
    again = bash(f"source {SETUP}; ensure_on_path", env={"ASSETFS_BIN_DIR": str(bin_dir)})
    assert again.returncode == 0 and os.readlink(link) == str(REPO / ".venv" / "bin" / "assetfs")
    link.unlink()
    write(link, "#!/bin/sh\necho mine\n")
    kept = bash(f"source {SETUP}; ensure_on_path", env={"ASSETFS_BIN_DIR": str(bin_dir)})
    assert kept.returncode == 0 and link.read_text() == "#!/bin/sh\necho mine\n"
    assert "not a link" in kept.stderr.decode()


def test_ensure_mount_helper_links_the_helper_where_mount_looks(tmp_path):
    sbin = tmp_path / "sbin"
    result = bash(f"source {SETUP}; ensure_mount_helper", env={"ASSETFS_SBIN_DIR": str(sbin)})
    assert result.returncode == 0, result.stderr.decode()
    link = sbin / "mount.fuse.assetfs"
    assert os.readlink(link) == str(REPO / ".venv" / "bin" / "mount.fuse.assetfs")
    usage = subprocess.run([str(link)], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and usage.stderr.startswith("mount.fuse.assetfs: usage: "), usage.stderr

    again = bash(f"source {SETUP}; ensure_mount_helper", env={"ASSETFS_SBIN_DIR": str(sbin)})
    assert again.returncode == 0 and "in place" in again.stderr.decode()
    link.unlink()
    write(link, "#!/bin/sh\n")
    kept = bash(f"source {SETUP}; ensure_mount_helper", env={"ASSETFS_SBIN_DIR": str(sbin)})
    assert kept.returncode == 0 and link.read_text() == "#!/bin/sh\n" and "not a link" in kept.stderr.decode()


def package_list(name: str) -> set[str]:
    result = bash(f'source {SETUP}; echo "${{{name}[@]}}"')
    assert result.returncode == 0, result.stderr.decode()
    return set(result.stdout.decode().split())


def test_start_installs_only_the_main_jobs_packages_and_test_adds_the_test_stack():
    main, test_only = package_list("ASSETFS_DEBIAN_PACKAGES"), package_list("ASSETFS_TEST_DEBIAN_PACKAGES")
    assert {"fuse3", "libfuse3-dev", "gcc", "python3-dev", "python3-venv", "libmagic1"} <= main
    assert not main & {"postgresql", "bindfs", "b3sum", "rsync", "attr"}, main
    assert {"postgresql", "bindfs", "b3sum", "rsync", "attr"} <= test_only

    def setup_calls(script: str) -> list[str]:
        lines = [line.split("#")[0].strip() for line in (REPO / "scripts" / script).read_text().splitlines()]
        return [line for line in lines if line.split(" ")[0] in ("ensure_debian_packages", "ensure_venv")]

    assert setup_calls("start") == ["ensure_debian_packages", "ensure_venv"]
    assert setup_calls("test") == ["ensure_debian_packages test", "ensure_venv test"]


def run_tour(store_root: Path) -> subprocess.CompletedProcess:
    result = bash(f"source {TOUR}; tour_run", env={"ASSETFS": ASSETFS, "ASSETFS_STORE": str(store_root)})
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    return result


def state(root: Path) -> dict:
    with Store.open(root) as store:
        return snapshot(store)


def test_the_tour_never_changes_a_users_data_and_reruns_change_nothing(store_root, tmp_path):
    # the user's own objects, under the names the tour used to take and the ones it uses now
    mine = put_one(store_root, "docs", str(write(tmp_path / "mine.txt", "my own readme\n")),
                   "--name", "tour/readme.txt")["id"]
    theirs = put_one(store_root, "tour", str(write(tmp_path / "theirs.txt", "a user's file in a bucket named tour\n")),
                     "--name", "settings.json")["id"]

    first = run_tour(store_root).stdout.decode()
    assert "put the tour's files" in first
    assert stat_json(store_root, mine)["names"] == ["tour/readme.txt"]
    assert run_cli(store_root, "cat", mine).stdout == b"my own readme\n"
    assert stat_json(store_root, theirs)["names"] == ["settings.json"], "a taken name stays with its object"
    assert run_cli(store_root, "cat", theirs).stdout == b"a user's file in a bucket named tour\n"
    tour = json.loads(run_cli(store_root, "stat", "tour/readme.txt", "--json").stdout)
    assert tour["names"] == ["copy-of-readme.txt", "readme.txt"], "one object for the same content"
    assert run_cli(store_root, "trash", "ls").stdout == b"", "nothing went to the trash"

    after_first = state(store_root)
    second = run_tour(store_root).stdout.decode()
    assert "nothing to put" in second
    assert state(store_root) == after_first, "a second tour changes nothing"


def start_store(tmp_path: Path, config: Path, legacy: Path) -> tuple[str, str, str]:
    """scripts/start's choice of store, run as root: (the store, ASSETFS_STORE if it exported
    one, what it said on stderr)."""
    environment = {key: value for key, value in os.environ.items() if key != "ASSETFS_STORE"}
    result = subprocess.run(
        ["bash", "-c", f'set -euo pipefail; source {SETUP}; source {STORE}; choose_start_store; '
                       'echo "$ASSETFS_STORE_PATH"; echo "${ASSETFS_STORE:-}"'],
        capture_output=True, timeout=120, cwd=tmp_path,
        env={**environment, "ASSETFS_CONFIG": str(config), "ASSETFS_LEGACY_STORE": str(legacy)})
    assert result.returncode == 0, result.stderr.decode()
    chosen, exported = result.stdout.decode().splitlines()
    return chosen, exported, result.stderr.decode()


def test_start_uses_the_store_every_command_uses(tmp_path, store_root):
    config, legacy = tmp_path / "etc" / "assetfs.toml", tmp_path / "repo" / "assetfs-data"
    write(config, f'store = "{store_root}"\n')
    assert start_store(tmp_path, config, legacy) == (str(store_root), "", "")

    # nothing names a store: the system default, as for every command
    config.unlink()
    assert start_store(tmp_path, config, legacy) == ("/var/lib/assetfs", "", "")


def test_start_keeps_a_store_an_earlier_version_made_in_the_checkout(tmp_path):
    config, legacy = tmp_path / "etc" / "assetfs.toml", tmp_path / "repo" / "assetfs-data"
    run_cli(legacy, "init")
    config.parent.mkdir()
    if Path("/var/lib/assetfs/assetfs.toml").exists():
        pytest.skip("/var/lib/assetfs is a store on this machine: it wins over the checkout's")
    chosen, exported, said = start_store(tmp_path, config, legacy)
    assert (chosen, exported) == (str(legacy), "")
    assert f"{config} names the existing store {legacy}" in said
    assert config.read_text().endswith(f'store = "{legacy}"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    environment = {key: value for key, value in os.environ.items() if key != "ASSETFS_STORE"}
    listed = subprocess.run([ASSETFS, "stats", "--json"], capture_output=True, timeout=120, cwd=elsewhere,
                            env={**environment, "ASSETFS_CONFIG": str(config)})
    assert listed.returncode == 0, listed.stderr.decode()

    # a configuration that names no store is left alone: the store is given to this run only
    write(config, "# kept as it is\n")
    chosen, exported, said = start_store(tmp_path, config, legacy)
    assert (chosen, exported) == (str(legacy), str(legacy)) and "ASSETFS_STORE=" in said
    assert config.read_text() == "# kept as it is\n"


def test_start_with_a_bad_system_config_stops_with_its_error(tmp_path):
    config = write(tmp_path / "assetfs.toml", 'store = "relative"\n')
    environment = {key: value for key, value in os.environ.items() if key != "ASSETFS_STORE"}
    result = subprocess.run(["bash", "-c", f"set -euo pipefail; source {SETUP}; source {STORE}; choose_start_store"],
                            capture_output=True, timeout=120, env={**environment, "ASSETFS_CONFIG": str(config)})
    assert result.returncode != 0
    assert "absolute path" in result.stderr.decode() and "Traceback" not in result.stderr.decode()


def test_ensure_on_path_not_as_root_says_how_to_run_assetfs():
    environment = {key: value for key, value in os.environ.items() if key != "ASSETFS_BIN_DIR"}
    result = subprocess.run(["runuser", "-u", "nobody", "--", "bash", "-c", f"source {SETUP}; ensure_on_path"],
                            capture_output=True, timeout=120, env=environment, cwd="/")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode() == f"{REPO / '.venv' / 'bin' / 'assetfs'}\n"
    assert "not root" in result.stderr.decode() and "PATH" in result.stderr.decode()
