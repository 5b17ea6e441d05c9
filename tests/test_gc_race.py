"""Puts, names, holds and deletes of a few identical contents in several processes, against
collector workers looping at the same time (two of them, sharing the work through
`SKIP LOCKED` on PostgreSQL and the write lock on SQLite).

With `min_age` and `grace` at zero the collector trashes, purges and sweeps as fast as it
can, so a put deduplicating onto an object or blob that is being collected happens often.
Each collector ends with a pass that started after the last put, so the blobs of contents
that no name refers to are swept by the workers themselves. Afterwards every live object has
its blob with the right hash, a final pass leaves no blob without an object, and fsck is
clean.
"""

import json
import subprocess
import sys
from pathlib import Path

from casgc import run_once
from cas.store import Store
from conftest import run_cli
from gc_helpers import assert_consistent, configure, unused_blobs
from helpers import count

WORKER = str(Path(__file__).parent / "gc_race_worker.py")
PUT_WORKERS = 3
GC_WORKERS = 2
ROUNDS = 60


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, WORKER, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(process: subprocess.Popen) -> dict:
    stdout, stderr = process.communicate(timeout=240)
    assert process.returncode == 0, f"{process.args[2]} worker failed:\n{stderr.decode()}"
    return json.loads(stdout)


def test_puts_and_deletes_racing_collector_workers(store_root: Path, tmp_path: Path) -> None:
    configure(store_root, '[gc]\nmin_age = "0s"\nbatch_size = 4\n\n[bucket_defaults]\ngrace = "0s"\n')
    stop_file = tmp_path / "stop"
    collectors = [start("gc", str(store_root), str(stop_file)) for _ in range(GC_WORKERS)]
    putters = [start("put", str(store_root), str(index), str(ROUNDS)) for index in range(PUT_WORKERS)]
    try:
        put_results = [finish(process) for process in putters]
    finally:
        stop_file.touch()
    gc_results = [finish(process) for process in collectors]

    assert sum(result["named"] for result in put_results) > 0
    assert sum(result["never_named"] for result in put_results) > 0
    assert all(result["runs"] >= 1 for result in gc_results)
    assert sum(result["trashed"] for result in gc_results) > 0
    assert sum(result["swept"] for result in gc_results) > 0

    with Store.open(store_root) as store:
        assert_consistent(store)
        final = run_once(store)
        assert final.clean, final.lines()
        assert unused_blobs(store) == []
        assert count(store, "objects", "deleted_at is not null") == 0
        for info in store.list():
            assert info.names, f"{info.id} is live but nothing refers to it"
        assert_consistent(store)
    run_cli(store_root, "fsck", "--verify-content")
