"""The gc suite: the garbage collector over many unreferenced objects, and puts beside it.

Goal (from the issue): puts while a GC run goes on have a p99 latency at most 2x the p99 of
puts on an idle store.

Each phase gets its own store (and, on PostgreSQL, its own schema) holding `--gc-objects`
unreferenced 4 KiB objects with no name, hold or rule, put (so their rows say) two hours
ago: nine in ten touched then (for the touched pass), one in ten with `touched_at` cleared
and `expires_at` passed (for the expired pass). The store's config has the default
`[gc] min_age = "1h"` and a grace of one minute, and every GC is two `casgc.run_once` calls: at
`now` (touched, expired, orphans have work) and at `now` + grace + 1 s (purge and sweep have
work). The put loop's objects are younger than `min_age` at both, so the GC leaves them alone.

1. *Puts* (first, while the disk has not seen the mass deletions a GC makes: on ext4 without
   a journal, creates slow down right after many files were deleted, see common.set_aside):
   another process puts 4 KiB of new content in a loop, timing each put; for `--gc-idle`
   seconds alone, then while both GC runs go on in this process.
2. *GC alone*: the same two runs on a fresh store with nothing else running; time per pass.

The objects are made by a bulk loader (`load_fixture`), not by `put`: put fsyncs each
object (about 65 puts/s), 25 minutes for 100,000. The loader writes the blob file, its alias
hardlink and the `blobs`/`objects` rows exactly as put would, without per-file fsyncs, in one
transaction per 10,000 objects, then syncs the filesystem once; `assetfs fsck` of the result
is checked clean before the GC runs.

Run as a script, this file is the put loop of phase 1 (`gc.py put-worker STORE OUT`).
"""

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BUCKET = "gcbench"  # the fixture's objects
PUT_BUCKET = "gcbench-puts"  # the objects the put loop makes (younger than min_age: never collected)
OBJECT_SIZE = 4096
EXPIRED_EVERY = 10  # one fixture object in ten is for the expired pass
GRACE_S = 60.0
MIN_AGE_S = 3600.0
AGE_S = 2 * 3600.0  # how long ago the fixture objects were put
BATCH_SIZE = 500  # [gc] batch_size, the default
LOAD_BATCH = 10_000  # fixture objects per catalog transaction
FILENAME = "upload"  # what put names an object read from a stream
WARMUP_PUTS = 5  # first puts of the loop, not counted (connections, the bucket row)
PUT_PARTS = ("stage", "durable", "lock_wait", "in_tx", "files", "flush", "commit")  # see breakdown_group
PG_DATABASE = "assetfs_bench"

CONFIG = """\
# written by scripts/benchmarks/gc.py
{url_line}orphan_grace = "1h"

[gc]
min_age = "{min_age}s"
batch_size = {batch_size}
interval = "10m"

[bucket_defaults]
dedupe = true
grace = "{grace}s"
"""


# the suite ---------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    from common import WORK_DIR, BenchError, goal_at_most

    catalog = args.gc_catalog
    base_url = postgres_url() if catalog == "postgres" else None
    fixtures: dict[str, dict[str, Any]] = {}
    try:
        with bench_store(WORK_DIR / "store-puts", base_url) as store:
            fixtures["puts"] = load_checked_fixture(store, args.gc_objects)
            latency = put_latency(store, args.gc_objects, args.gc_idle)
            final = check_fsck(store)
            if not final["clean"] or final["objects"] != latency["puts_made"]:
                raise BenchError(f"after GC the store holds {final['objects']} objects (expected the "
                                 f"{latency['puts_made']} put ones) or fsck is not clean: {final}")
        with bench_store(WORK_DIR / "store-gc", base_url) as store:
            fixtures["gc"] = load_checked_fixture(store, args.gc_objects)
            alone = gc_runs(store, args.gc_objects)
    finally:
        if base_url:
            drop_schemas(base_url)

    idle, during = latency["windows"]["idle"], latency["windows"]["during GC"]
    ratio = during["p99_ms"] / idle["p99_ms"] if idle["p99_ms"] else float("inf")
    return {
        "parameters": {
            "objects": f"{args.gc_objects} x {OBJECT_SIZE} bytes ({args.gc_objects // EXPIRED_EVERY} of them "
                       "expired, the rest touched; no names, holds or rules)",
            "catalog": catalog,
            "gc": f'min_age = {MIN_AGE_S:g}s (objects put {AGE_S:g}s ago), grace = {GRACE_S:g}s, batch_size = {BATCH_SIZE}; runs at now and now + grace + 1s',
            "puts": f"{OBJECT_SIZE} bytes of new content each, one process, back to back; "
                    f"{args.gc_idle:g}s idle, then during GC",
        },
        "fixtures": fixtures,
        "gc_alone": alone,
        "put_latency": latency,
        "groups": [
            fixture_group(fixtures),
            gc_group(f"GC of {args.gc_objects} unreferenced objects, nothing else running", alone),
            latency_group(latency, ratio, goal_at_most("puts during GC at p99 <= 2x idle", ratio, 2.0, "x idle p99")),
            breakdown_group(latency),
            gc_group(f"the same GC while the puts ran (phase 1, {args.gc_objects} objects)", latency["gc"]),
        ],
    }


def add_options(parser: argparse.ArgumentParser) -> None:
    """The suite's options (run.py puts them in their own group)."""
    parser.add_argument("--gc-objects", type=_positive_int, default=100_000, metavar="N",
                        help="unreferenced objects the collector collects (default: 100000)")
    parser.add_argument("--gc-catalog", choices=("sqlite", "postgres"), default="sqlite",
                        help="catalog of the stores (default: sqlite); postgres starts the local cluster "
                             "(scripts/lib/setup.sh) and uses a fresh schema in database " + PG_DATABASE)
    parser.add_argument("--gc-idle", type=float, default=20.0, metavar="SECONDS",
                        help="how long puts are timed on the idle store before the GC starts (default: 20)")


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


# stores and the fixture --------------------------------------------------------------------

_schemas: list[str] = []


@contextmanager
def bench_store(root: Path, base_url: str | None) -> Iterator[Any]:
    """A fresh store at `root` with the suite's config; on PostgreSQL in a new schema."""
    from cas.config import CONFIG_NAME
    from cas.store import Store

    url = None
    if base_url:
        schema = f"gcbench_{os.getpid()}_{len(_schemas)}"
        _schemas.append(schema)  # init creates it: the catalog's own schema
        url = base_url
    store, _ = Store.init(root, url, database_schema=schema if url else None)
    store.close()
    url_line = f'database_url = "{url}"\ndatabase_schema = "{schema}"\n' if url else ""
    (root / CONFIG_NAME).write_text(CONFIG.format(url_line=url_line, batch_size=BATCH_SIZE, grace=int(GRACE_S),
                                               min_age=int(MIN_AGE_S)))
    store = Store.open(root)
    try:
        yield store
    finally:
        store.close()


def postgres_url() -> str:
    """Start the local cluster and make the bench database, with scripts/lib/setup.sh."""
    from common import ROOT, run_command

    script = (f'set -euo pipefail; source "{ROOT}/scripts/lib/setup.sh"; ensure_postgres; '
              f"ensure_postgres_database {PG_DATABASE}; postgres_test_url {PG_DATABASE}")
    return run_command(["bash", "-c", script]).strip()


def drop_schemas(base_url: str) -> None:
    import psycopg

    with psycopg.connect(base_url, autocommit=True) as connection:
        while _schemas:
            connection.execute(f"drop schema if exists {_schemas.pop()} cascade")


def load_checked_fixture(store: Any, count: int) -> dict[str, Any]:
    from common import BenchError

    print(f"  loading {count} objects", file=sys.stderr)
    loaded = load_fixture(store, count)
    print(f"  loaded in {loaded['seconds']:.1f}s; fsck", file=sys.stderr)
    checked = check_fsck(store)
    if not checked["clean"] or checked["objects"] != count:
        raise BenchError(f"fsck of the fixture: {checked}")
    return {**loaded, "fsck": checked}


def load_fixture(store: Any, count: int) -> dict[str, Any]:
    """`count` unreferenced objects of random content, with files and rows as put makes them."""
    import blake3

    from cas import names
    from cas.content_type import detect_content_type
    from cas.ids import new_object_id

    tree, catalog = store.tree, store.catalog
    started = time.perf_counter()
    now = time.time() - AGE_S
    owner = names.Owner.current()
    catalog.run(lambda tx: names.ensure_bucket(tx, BUCKET, now, owner))
    content_type = None  # random data: libmagic says the same for every object (put asks it each time)
    made = 0
    while made < count:
        blobs, objects = [], []
        for number in range(made, min(made + LOAD_BATCH, count)):
            data = os.urandom(OBJECT_SIZE)
            if content_type is None:
                content_type = detect_content_type(data, FILENAME)
            hash_hex = blake3.blake3(data).hexdigest()
            blob = tree.blob_path(hash_hex)
            blob.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(blob, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, data)
                os.fchmod(fd, 0o444)  # blobtree.BLOB_MODE
            finally:
                os.close(fd)
            object_id = new_object_id()
            alias = tree.alias_path(BUCKET, object_id, FILENAME)
            alias.parent.mkdir(parents=True)
            os.link(blob, alias)
            expired = number % EXPIRED_EVERY == 0
            blobs.append({"hash": hash_hex, "size": OBJECT_SIZE, "now": now})
            objects.append({"id": object_id, "bucket": BUCKET, "hash": hash_hex, "size": OBJECT_SIZE,
                            "content_type": content_type, "filename": FILENAME, "metadata": "{}", "now": now,
                            # an expired object whose touch was already checked (a rule kept it then)
                            "touched_at": None if expired else now, "expires_at": now - 1 if expired else None})
        catalog.run(lambda tx: _insert_rows(store, tx, blobs, objects))
        made += len(objects)
    os.sync()
    seconds = time.perf_counter() - started
    return {"objects": count, "seconds": round(seconds, 2), "objects_per_s": round(count / seconds)}


def _insert_rows(store: Any, tx: Any, blobs: list[dict[str, Any]], objects: list[dict[str, Any]]) -> None:
    """The rows put's transaction inserts, many at a time (executemany of the same SQL)."""
    insert_blob = "insert into blobs (hash, size, created_at) values (:hash, :size, :now)"
    insert_object = (
        "insert into objects (id, bucket, hash, size, content_type, filename, metadata, created_at, touched_at, "
        "expires_at) values (:id, :bucket, :hash, :size, :content_type, :filename, :metadata, :now, :touched_at, "
        ":expires_at)"
    )
    for sql, rows in ((insert_blob, blobs), (insert_object, objects)):
        if store.catalog.dialect == "postgres":
            from cas.catalog.postgres import translate

            with tx.connection.cursor() as cursor:
                cursor.executemany(translate(sql), rows)
        else:
            tx.connection.executemany(sql, rows)


def check_fsck(store: Any) -> dict[str, Any]:
    """`assetfs fsck` (without --verify) of the store: clean, and how many objects it saw."""
    from cas.fsck import check_store

    started = time.perf_counter()
    report = check_store(store)
    return {"clean": report.clean, "objects": report.objects, "problems": len(report.problems),
            "seconds": round(time.perf_counter() - started, 2)}


# the collector -----------------------------------------------------------------------------


class BatchClock:
    """A `run_once` progress callback: when each batch of each pass ended, hence how long each
    batch took (on SQLite, about how long it held the write lock)."""

    def __init__(self) -> None:
        self.last = time.monotonic()
        self.batches: dict[str, list[float]] = defaultdict(list)

    def restart(self) -> None:
        self.last = time.monotonic()

    def __call__(self, name: str, examined: int) -> None:
        now = time.monotonic()
        self.batches[name].append(now - self.last)
        self.last = now


def gc_runs(store: Any, count: int) -> dict[str, Any]:
    """The two collector runs: now, then past the grace. Passes with their monotonic start and
    end, so puts can be matched with the pass they ran beside."""
    from casgc import run_once

    from common import BenchError

    clock = BatchClock()
    now = time.time()
    passes, started = [], time.monotonic()
    for number, run_now in enumerate((now, now + GRACE_S + 1), start=1):
        clock.restart()
        run_started = time.monotonic()
        report = run_once(store, now=run_now, progress=clock)
        if not report.clean:
            raise BenchError(f"GC run {number} reported errors: {report.lines()}")
        offset = run_started
        for result in report.passes:
            batches = clock.batches.pop(result.name, [])
            passes.append({
                "run": number, "pass": result.name, "examined": result.examined, "counts": dict(result.counts),
                "seconds": round(result.seconds, 3),
                "objects_per_s": round(result.examined / result.seconds) if result.seconds else None,
                "batches": len(batches),
                "batch_median_ms": round(statistics.median(batches) * 1000, 1) if batches else None,
                "batch_max_ms": round(max(batches) * 1000, 1) if batches else None,
                "start": offset, "end": offset + result.seconds,
            })
            offset += result.seconds
    seconds = time.monotonic() - started
    done = {name: sum(p["counts"].get(action, 0) for p in passes if p["pass"] == name)
            for name, action in (("touched", "trashed"), ("expired", "trashed"), ("purge", "purged"), ("sweep", "swept"))}
    if done["touched"] + done["expired"] != count or done["purge"] != count or done["sweep"] != count:
        raise BenchError(f"GC did not collect the {count} fixture objects: {done}")
    return {"seconds": round(seconds, 2), "objects_per_s": round(count / seconds), "passes": passes}


def gc_group(title: str, gc: dict[str, Any]) -> dict[str, Any]:
    header = ["run", "pass", "examined", "done", "seconds", "objects/s", "batches", "batch median ms", "batch max ms"]
    rows = [
        [str(p["run"]), p["pass"], str(p["examined"]),
         ", ".join(f"{count} {what}" for what, count in sorted(p["counts"].items())) or "-",
         f"{p['seconds']:.2f}", "-" if p["objects_per_s"] is None else str(p["objects_per_s"]),
         str(p["batches"]), _ms(p["batch_median_ms"]), _ms(p["batch_max_ms"])]
        for p in gc["passes"]
    ]
    rows.append(["", "total", "", "", f"{gc['seconds']:.2f}", f"{gc['objects_per_s']} fixture objects/s", "", "", ""])
    return {"title": title, "table": {"header": header, "rows": rows}, "goals": [],
            "notes": ["orphans examines every blob file; a batch is one transaction (on SQLite it holds the write "
                      "lock throughout; purge removes aliases after its commit)"]}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def fixture_group(fixtures: dict[str, dict[str, Any]]) -> dict[str, Any]:
    header = ["store", "objects", "load s", "objects/s", "fsck s", "fsck"]
    rows = [[name, str(f["objects"]), f"{f['seconds']:.1f}", str(f["objects_per_s"]), f"{f['fsck']['seconds']:.1f}",
             "clean" if f["fsck"]["clean"] else f"{f['fsck']['problems']} problems"] for name, f in fixtures.items()]
    return {"title": "fixture: bulk-loaded objects (files and rows as put makes them; one sync at the end)",
            "table": {"header": header, "rows": rows}, "goals": []}


# put latency -------------------------------------------------------------------------------


def put_latency(store: Any, count: int, idle_seconds: float) -> dict[str, Any]:
    from common import WORK_DIR, BenchError

    out = WORK_DIR / "put-latencies.json"
    worker = subprocess.Popen([sys.executable, __file__, "put-worker", str(store.root), str(out)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        if worker.stdout.readline().strip() != "ready":
            raise BenchError("the put loop did not start")
        print(f"  puts on the idle store for {idle_seconds:g}s", file=sys.stderr)
        time.sleep(idle_seconds)
        print("  GC while the puts go on", file=sys.stderr)
        gc = gc_runs(store, count)
        time.sleep(1.0)  # a few puts after the GC: they are not counted in either window
        worker.stdin.write("stop\n")
        worker.stdin.close()
        if worker.wait(timeout=120) != 0:
            raise BenchError(f"the put loop failed (exit {worker.returncode})")
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    puts = json.loads(out.read_text())
    out.unlink()
    gc_start, gc_end = gc["passes"][0]["start"], gc["passes"][-1]["end"]
    windows = {
        "idle": [p for p in puts if p["start"] + p["total"] <= gc_start],
        "during GC": [p for p in puts if gc_start <= p["start"] <= gc_end],
    }
    for each in gc["passes"]:
        if each["examined"]:
            windows[f"during {each['pass']} (run {each['run']})"] = [
                p for p in puts if each["start"] <= p["start"] <= each["end"]]
    return {"puts_made": len(puts) + WARMUP_PUTS, "gc": gc,
            "windows": {name: latency_stats(found) for name, found in windows.items()}}


def latency_stats(puts: list[dict[str, float]]) -> dict[str, Any]:
    stats: dict[str, Any] = {"puts": len(puts)}
    for part in ("total", *PUT_PARTS):
        values = sorted(p[part] for p in puts)
        key = "" if part == "total" else f"{part}_"
        stats[f"{key}p50_ms"] = round(_percentile(values, 50) * 1000, 2) if values else None
        stats[f"{key}p99_ms"] = round(_percentile(values, 99) * 1000, 2) if values else None
        if part == "total":
            stats["max_ms"] = round(values[-1] * 1000, 2) if values else None
    return stats


def _percentile(values: list[float], percent: float) -> float:
    """Nearest rank."""
    rank = max(1, -(-len(values) * percent // 100))
    return values[int(rank) - 1]


def latency_group(latency: dict[str, Any], ratio: float, check: dict[str, Any]) -> dict[str, Any]:
    idle = latency["windows"]["idle"]
    header = ["window", "puts", "p50 ms", "p99 ms", "max ms", "p99 / idle p99"]
    rows = [[name, str(w["puts"]), _ms(w["p50_ms"]), _ms(w["p99_ms"]), _ms(w["max_ms"]),
             f"{w['p99_ms'] / idle['p99_ms']:.2f}" if w["p99_ms"] and idle["p99_ms"] else "-"]
            for name, w in latency["windows"].items()]
    return {"title": f"latency of {OBJECT_SIZE}-byte puts (another process), idle vs during the GC",
            "table": {"header": header, "rows": rows}, "goals": [check], "ratio": round(ratio, 3)}


def breakdown_group(latency: dict[str, Any]) -> dict[str, Any]:
    parts = (("stage", "stage"), ("durable", "fsync staged"), ("lock_wait", "begin (lock wait)"),
             ("in_tx", "in transaction"), ("files", "of it: blob + alias"), ("flush", "of it: folder fsyncs"),
             ("commit", "commit"))
    header = ["window", *(f"{label} p50/p99" for _, label in parts)]
    rows = [[name, *(f"{_ms(w[f'{part}_p50_ms'])}/{_ms(w[f'{part}_p99_ms'])}" for part, _ in parts)]
            for name, w in latency["windows"].items()]
    return {"title": "where a put's time goes (ms): staging, fsync of the staged file, waiting to begin the write "
                     "transaction, its body (SQL, blob rename + alias link, fsyncs of their folders), commit",
            "table": {"header": header, "rows": rows}, "goals": []}


# the put loop (a separate process) ---------------------------------------------------------


def put_worker(root: str, out: str) -> None:
    """Put 4 KiB of new content in a loop until a line arrives on stdin; write every put's
    monotonic start and durations (total and its parts) to `out` as JSON."""
    from cas.store import Store

    store = Store.open(root)
    parts: dict[str, float] = {}
    _time_parts(store, parts)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    for _ in range(WARMUP_PUTS):
        store.put(PUT_BUCKET, io.BytesIO(os.urandom(OBJECT_SIZE)))
    print("ready", flush=True)
    puts = []
    while not stop.is_set():
        data = os.urandom(OBJECT_SIZE)
        parts.clear()
        start = time.monotonic()
        store.put(PUT_BUCKET, io.BytesIO(data))
        total = time.monotonic() - start
        puts.append({"start": start, "total": total, **{part: parts.get(part, 0.0) for part in PUT_PARTS}})
    store.close()
    Path(out).write_text(json.dumps(puts))


def _time_parts(store: Any, parts: dict[str, float]) -> None:
    """Wrap the store's staging, fsyncs and write transaction to time them (on this instance;
    the folder fsyncs for this process)."""
    from cas import blobtree

    tree, catalog = store.tree, store.catalog

    def timed(name: str, function: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.monotonic()
            try:
                return function(*args, **kwargs)
            finally:
                parts[name] = parts.get(name, 0.0) + time.monotonic() - started
        return wrapper

    tree.stage = timed("stage", tree.stage)
    tree.make_durable = timed("durable", tree.make_durable)
    tree.install_blob = timed("files", tree.install_blob)
    tree.make_alias = timed("files", tree.make_alias)
    blobtree.PendingSync.flush = timed("flush", blobtree.PendingSync.flush)
    transaction = catalog.transaction

    @contextmanager
    def timed_transaction(write: bool = False, **options: Any) -> Iterator[Any]:
        if not write:
            with transaction(write=write, **options) as tx:
                yield tx
            return
        called = time.monotonic()
        with transaction(write=write, **options) as tx:  # SQLite: waits here for the write lock
            began = time.monotonic()
            try:
                yield tx
            finally:
                ended = time.monotonic()
                parts["lock_wait"] = parts.get("lock_wait", 0.0) + began - called
                parts["in_tx"] = parts.get("in_tx", 0.0) + ended - began
        parts["commit"] = parts.get("commit", 0.0) + time.monotonic() - ended

    catalog.transaction = timed_transaction


if __name__ == "__main__":
    if sys.argv[1:2] == ["put-worker"] and len(sys.argv) == 4:
        put_worker(sys.argv[2], sys.argv[3])
    else:
        sys.exit("usage: gc.py put-worker STORE OUT (the suite itself runs from scripts/bench --suite gc)")
