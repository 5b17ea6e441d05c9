"""scripts/start and its helpers in scripts/lib (issue 8, "First contact"): `assetfs` on PATH,
the main job's packages apart from the test stack's, and a tour that never changes a user's
data, however often it runs. Run for real with bash, against real stores on both catalogs.
"""

import json
import os
import subprocess
from pathlib import Path

from cas.store import Store
from conftest import ASSETFS, run_cli
from helpers import snapshot
from test_cli import put_one, stat_json, write

REPO = Path(__file__).resolve().parent.parent
SETUP = REPO / "scripts" / "lib" / "setup.sh"
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
