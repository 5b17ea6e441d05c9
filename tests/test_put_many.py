"""put_many commits files in batches: one flush and one transaction per batch, with the same
guarantees as a put of each file."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cas.errors import BadInput
from cas.fsck import ORPHAN_KINDS, check_store
from cas.store import BATCH_FILES, PutRequest, Store
from helpers import blob_files, tmp_entries


def make_files(folder: Path, count: int, duplicates_every: int = 0) -> list[Path]:
    folder.mkdir()
    files = []
    for index in range(count):
        path = folder / f"file-{index:05d}.bin"
        same = duplicates_every and index % duplicates_every == 0
        path.write_bytes(b"the same content" if same else os.urandom(100) + str(index).encode())
        files.append(path)
    return files


def test_many_files_in_several_batches_are_all_stored_in_order(store: Store, tmp_path: Path) -> None:
    files = make_files(tmp_path / "src", BATCH_FILES + 44, duplicates_every=10)
    heard = []
    results = store.put_many("photos", [PutRequest(path, f"dir/{path.name}") for path in files],
                             on_result=heard.append)
    assert results == heard and len(results) == len(files)
    for path, result in zip(files, results):
        assert result.name == f"dir/{path.name}"
        assert store.open_object(result.object.id).read() == path.read_bytes()
    same = {result.object.id for path, result in zip(files, results) if path.read_bytes() == b"the same content"}
    assert len(same) == 1  # identical content in one batch and across batches: one object
    distinct = len({path.read_bytes() for path in files})
    assert len(blob_files(store.root)) == distinct
    assert tmp_entries(store) == []
    assert check_store(store, verify_content=True, orphan_grace=0).problems == []


def test_a_bad_request_stops_the_run_and_keeps_earlier_batches(store: Store, tmp_path: Path) -> None:
    files = make_files(tmp_path / "src", BATCH_FILES + 10)
    requests = [PutRequest(path, path.name) for path in files]
    requests.insert(BATCH_FILES + 5, PutRequest(tmp_path / "missing.bin", "missing.bin"))
    with pytest.raises(BadInput, match="no such file"):
        store.put_many("photos", requests)
    stored = {info.names[0] for info in store.list("photos")}
    assert stored == {path.name for path in files[:BATCH_FILES]}  # the first batch committed
    assert tmp_entries(store) == []  # the second batch's staged copies are gone
    assert check_store(store, orphan_grace=0).problems == []


PUT_MANY_SNIPPET = """
import sys
from pathlib import Path
from cas.store import PutRequest, Store
with Store.open(sys.argv[1]) as store:
    store.put_many("photos", [PutRequest(path, path.name) for path in sorted(Path(sys.argv[2]).iterdir())])
"""


@pytest.mark.parametrize("crash_at", ["put:durable", "put:blob-installed", "put:alias-made", "put:before-commit",
                                      "put:committed"])
def test_a_batch_killed_midway_leaves_only_orphans(store_root: Path, tmp_path: Path, crash_at: str) -> None:
    files = make_files(tmp_path / "src", 40)
    result = subprocess.run([sys.executable, "-c", PUT_MANY_SNIPPET, str(store_root), str(tmp_path / "src")],
                            env={**os.environ, "ASSETFS_CRASH_AT": crash_at}, capture_output=True, timeout=60)
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()
    with Store.open(store_root) as store:
        report = check_store(store, orphan_grace=0)
        assert all(problem.kind in ORPHAN_KINDS for problem in report.problems), [p.describe() for p in report.problems]
        committed = list(store.list("photos"))
        assert len(committed) == (len(files) if crash_at == "put:committed" else 0)
        assert check_store(store, repair=True, orphan_grace=0).clean
        assert check_store(store, verify_content=True, orphan_grace=0).problems == []
        results = store.put_many("photos", [PutRequest(path, path.name) for path in files])
        assert [store.open_object(r.object.id).read() for r in results] == [p.read_bytes() for p in files]
