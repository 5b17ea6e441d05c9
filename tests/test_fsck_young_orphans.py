"""Right after a killed put batch, fsck is clean (issue 11, finding 18).

A batch whose content is stored already (in another bucket) makes its objects' aliases as
links to blobs that have rows; killed before its commit, those aliases have no row. While
they are younger than the orphan grace they are a put in flight's files, not problems: no
`link_count` problem for their blobs. Past the grace (`--orphan-grace 0s`) they are reported
as orphan aliases, and `--repair` removes them and leaves a clean store."""

import json
import os
import signal
import subprocess
from pathlib import Path

from conftest import ASSETFS, run_cli


def fsck(store_root: Path, *args: str) -> tuple[int, list[dict], dict]:
    result = run_cli(store_root, "fsck", "--json", *args, check=None)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    return result.returncode, lines[:-1], lines[-1]


def test_a_killed_batch_is_clean_within_the_grace_and_repaired_after(store_root: Path, tmp_path: Path) -> None:
    sources = []
    for index in range(3):
        sources.append(tmp_path / f"f{index}.bin")
        sources[-1].write_bytes(os.urandom(5000))
    run_cli(store_root, "put", "first", *map(str, sources[:2]))  # two of the three stored already
    killed = subprocess.run([ASSETFS, "--store", str(store_root), "put", "second", *map(str, sources)],
                            env={**os.environ, "ASSETFS_CRASH_AT": "put:before-commit"}, capture_output=True,
                            timeout=60)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    aliases = list((store_root / "objects" / "second").rglob("*.bin"))
    assert len(aliases) == 3  # the batch's aliases, made before its commit, without rows

    code, problems, summary = fsck(store_root)
    assert (code, problems, summary["clean"]) == (0, [], True)
    code, problems, _ = fsck(store_root, "--repair")
    assert (code, problems) == (0, [])
    assert len(list((store_root / "objects" / "second").rglob("*.bin"))) == 3  # young: left alone

    code, problems, _ = fsck(store_root, "--orphan-grace", "0s")
    assert code == 1
    kinds = sorted(problem["kind"] for problem in problems)
    assert "link_count" not in kinds and kinds.count("orphan_alias") == 3, kinds
    code, problems, summary = fsck(store_root, "--repair", "--orphan-grace", "0s")
    assert code == 0 and summary["clean"] and all(problem["repaired"] for problem in problems), problems
    assert list((store_root / "objects" / "second").rglob("*.bin")) == []
    assert fsck(store_root, "--orphan-grace", "0s", "--verify-content")[1] == []
    listed = [json.loads(line) for line in run_cli(store_root, "ls", "--json").stdout.splitlines()]
    assert sorted(record["bucket"] for record in listed) == ["first", "first"]
