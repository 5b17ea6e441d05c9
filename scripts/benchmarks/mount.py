"""The mount suite: the assetfs mount beside the native directory, a bindfs mount of it and
the pyfuse3 floor.

Four views, measured in one run, alternating, medians:
  native   a folder on the disk under test (bench-results/work/native)
  bindfs   Debian's bindfs (a C FUSE passthrough, default options) mounting that folder: the peer
  floor    floorfs.py, a minimal in-memory pyfuse3 filesystem: what a pyfuse3 mount costs when its
           handlers do no work (small-file and metadata measurements only; 1 GiB stays out of
           its memory)
  assetfs  `assetfs mount` of a store on the same disk; big reads come from an object
           (/<bucket>/.by-id/<id>/<filename>), writes go into the bucket's named tree

Measurements and goals (from the FUSE issues; speed ratios are native time / time, time ratios
the other way round):
  read 1 GiB cold / warm   `dd bs=1M` of a 1 GiB file (an object for assetfs) >= 0.6x / >= 0.9x
  cp 1 GiB                 `cp` of a 1 GiB file into the view: >= 0.5x
  cp -r small files        `cp -r` of 2,000 4 KiB files: <= 1.5x the floor's time
  rsync -a small files     `rsync -a` of the same files: <= 2x the floor's time
  find | xargs stat        over those files: <= 2x native time
  ls -l 100,000            a bucket's .by-id folder of 100,000 objects vs a native folder of
                           100,000 folders (the floor: as many folders made through it): <= 3x
                           native time

Fairness:
- Before each run of a copy, the first 16 bytes of every source file are rewritten with a
  run number, so every run copies content the store has not seen (no dedup shortcut), and
  its output is removed (one big file) or set aside (the small files; see common.set_aside).
- assetfs commits and fsyncs each file on close; `cp` on the native folder does not, so the
  copies are also timed natively followed by `sync -f` (an extra baseline column).
- The stat and ls runs start 1.1 s after the previous one, so both FUSE mounts' 1 s
  entry/attribute timeouts have run out, as they have for anyone who looks again later;
  the native folder keeps its dentry cache.
- The 100,000 objects are written in bulk (blob files, aliases and catalog rows in one
  transaction) and then checked with `assetfs fsck`: `Store.put` costs ~5-7 ms a tiny
  object (measured on a sample and recorded), ~10 min for 100,000.

Mounts are made once for the whole suite and always unmounted (finally, also on Ctrl-C and
SIGTERM); at the end /proc/mounts is checked. Mountpoints are under bench-results/mounts/,
outside the work folder that run.py deletes, so a deletion never walks into a mount.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import blake3

from common import (
    ASSETFS,
    RESULTS_DIR,
    ROOT,
    WORK_DIR,
    BenchError,
    Contender,
    Group,
    format_size,
    group_record,
    machine,
    measure,
    run_command,
    set_aside,
)
from put import write_random_file, write_small_files

BUCKET = "bench"  # the big object, copies and the small files
MANY_BUCKET = "many"  # the bucket of many objects for ls -l
SMALL_FILE_SIZE = 4096
MOUNTS_DIR = RESULTS_DIR / "mounts"
CHART = RESULTS_DIR / "mount.png"
FUSE_TIMEOUT_PAUSE = 1.1  # s: longer than the 1 s entry/attr timeouts of both mounts
STAMP_SIZE = 16
PUT_SAMPLE = 200  # tiny objects put with Store.put to measure what the API would cost
VIEWS = ("native", "bindfs", "assetfs")  # the 1 GiB reads and copies
SMALL_VIEWS = ("native", "bindfs", "floor", "assetfs")  # small files and metadata
FLOORFS = Path(__file__).with_name("floorfs.py")


def run(args: argparse.Namespace) -> dict[str, Any]:
    if os.geteuid() != 0:
        raise BenchError("the mount suite drops the page cache for cold reads and raises read-ahead: run it as root")
    for tool in ("bindfs", "fusermount3", "dd", "find", "xargs", "stat"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} not found (scripts/bench installs Debian's bindfs and fuse3)")
    started = time.perf_counter()
    paths = Paths()
    fixture = prepare(paths, args)
    previous = {number: signal.signal(number, _interrupted) for number in (signal.SIGTERM, signal.SIGHUP)}
    try:
        with mounted(paths) as mount_info:
            fixture["assetfs_small_copy_s"] = copy_tree_in(paths.small_src, paths.view_small["assetfs"])
            fixture["floor_small_copy_s"] = copy_tree_in(paths.small_src, paths.view_small["floor"])
            with timed(fixture, "floor_folders_s"):
                make_folders_like(paths.view_many["native"], paths.view_many["floor"])
            groups = measure_all(paths, args)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    summary = summarize(groups)
    print_summary(summary)
    chart = write_chart(summary, args)
    return {
        "parameters": {
            "size": format_size(args.mount_size),
            "files": f"{args.mount_files} x {format_size(SMALL_FILE_SIZE)}",
            "objects": args.mount_objects,
            "repeat": args.repeat,
            "cache": "warm (sources read before each run) unless the group says cold",
            "views": {"native": str(paths.native), "bindfs": f"bindfs {paths.native} {paths.mnt['bindfs']}",
                      "floor": f"{FLOORFS.relative_to(ROOT)} {paths.mnt['floor']}",
                      "assetfs": f"assetfs --store {paths.store} mount {paths.mnt['assetfs']}"},
            **mount_info,
            "fixture": fixture,
            "suite_seconds": round(time.perf_counter() - started, 1),
        },
        "groups": groups,
        "summary": summary,
        "chart": str(chart.relative_to(ROOT)) if chart else None,
    }


def _interrupted(number: int, _frame: Any) -> None:
    """SIGTERM/SIGHUP end the suite like Ctrl-C, so the mounts are unmounted on the way out."""
    raise KeyboardInterrupt(f"signal {signal.Signals(number).name}")


# layout and fixtures ----------------------------------------------------------------------


class Paths:
    def __init__(self) -> None:
        self.native = WORK_DIR / "native"  # bindfs mounts this folder
        self.store = WORK_DIR / "store"
        self.source = WORK_DIR / "source"  # what the copies copy
        self.big_src = self.source / "big.bin"
        self.small_src = self.source / "small"
        self.mnt = {view: MOUNTS_DIR / view for view in ("bindfs", "floor", "assetfs")}
        self.logs = {"bindfs": WORK_DIR / "bindfs.log", "floor": WORK_DIR / "floorfs.log",
                     "assetfs": WORK_DIR / "assetfs-mount.log"}
        # each view's root for the bench data: the bucket's named tree for assetfs
        self.root = {"native": self.native, "bindfs": self.mnt["bindfs"], "floor": self.mnt["floor"],
                     "assetfs": self.mnt["assetfs"] / BUCKET}
        self.view_small = {view: self.root[view] / "small" for view in SMALL_VIEWS}
        self.view_many = {"native": self.native / "many", "bindfs": self.mnt["bindfs"] / "many",
                          "floor": self.mnt["floor"] / "many",
                          "assetfs": self.mnt["assetfs"] / MANY_BUCKET / ".by-id"}  # docs/fuse.md
        self.view_read: dict[str, Path] = {}  # filled in by prepare()


def prepare(paths: Paths, args: argparse.Namespace) -> dict[str, Any]:
    """Everything that is created before mounting; returns what it cost."""
    costs: dict[str, Any] = {}
    paths.native.mkdir()
    paths.source.mkdir()
    with timed(costs, "random_data_s"):
        write_random_file(paths.native / "read.bin", args.mount_size)
        write_random_file(paths.big_src, args.mount_size)
        write_small_files(paths.small_src, args.mount_files)
    with timed(costs, "native_small_copy_s"):
        run_command(["cp", "-r", str(paths.small_src), str(paths.view_small["native"])])
    run_command([ASSETFS, "--store", str(paths.store), "init"])
    with timed(costs, "put_big_s"):
        put = json.loads(run_command([ASSETFS, "--store", str(paths.store), "put", BUCKET,
                                      str(paths.native / "read.bin"), "--no-name", "--json"]))
    paths.view_read = {
        "native": paths.native / "read.bin",
        "bindfs": paths.mnt["bindfs"] / "read.bin",
        "assetfs": paths.mnt["assetfs"] / BUCKET / ".by-id" / put["id"] / "read.bin",
    }
    print(f"creating {args.mount_objects} objects in bucket {MANY_BUCKET} and a native folder of as many folders",
          file=sys.stderr)
    costs["store_put_ms_per_tiny_object"] = store_put_cost(WORK_DIR / "put-sample-store", PUT_SAMPLE)
    with timed(costs, "bulk_objects_s"):
        ids = make_many_objects(paths.store, MANY_BUCKET, args.mount_objects)
    with timed(costs, "fsck_s"):
        check_fsck(paths.store, expected_objects=args.mount_objects + 1)
    with timed(costs, "native_folders_s"):
        paths.view_many["native"].mkdir()
        for object_id in ids:
            os.mkdir(paths.view_many["native"] / object_id)
    os.sync()
    return costs


@contextlib.contextmanager
def timed(costs: dict[str, Any], key: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    costs[key] = round(time.perf_counter() - start, 2)


def store_put_cost(root: Path, count: int) -> float:
    """Milliseconds per tiny object through `Store.put`, in one process (a throwaway store)."""
    from cas.store import Store

    store, _ = Store.init(root)
    with store:
        start = time.perf_counter()
        for number in range(count):
            store.put("sample", io.BytesIO(b"sample %d\n" % number), filename=f"f{number:06d}.txt",
                      content_type="text/plain")
        seconds = time.perf_counter() - start
    shutil.rmtree(root)
    return round(seconds / count * 1000, 2)


def make_many_objects(store_root: Path, bucket: str, count: int) -> list[str]:
    """`count` real objects of distinct tiny content in a new `bucket`, written in bulk.

    Each gets what a put makes (docs/schema.md): a 0444 blob file under blobs/, a hardlink
    alias under objects/<bucket>/, a `blobs` row and an `objects` row (touched, no name), all
    rows in one transaction after one sync of the files. `assetfs fsck` checks the result.
    Returns the object ids.
    """
    from cas import names
    from cas.ids import new_object_id
    from cas.store import Store

    ids: list[str] = []
    rows: list[dict[str, Any]] = []
    with Store.open(store_root) as store:
        tree = store.tree
        now = time.time()
        made_dirs: set[Path] = set()
        for number in range(count):
            content = b"object %d\n" % number
            hash_hex = blake3.blake3(content).hexdigest()
            object_id = new_object_id()
            filename = f"f{number:06d}.txt"
            blob = tree.blob_path(hash_hex)
            if blob.parent not in made_dirs:
                blob.parent.mkdir(parents=True, exist_ok=True)
                made_dirs.add(blob.parent)
            fd = os.open(blob, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
            try:
                os.write(fd, content)
                os.fchmod(fd, 0o444)
            finally:
                os.close(fd)
            alias = tree.alias_path(bucket, object_id, filename)
            alias.parent.mkdir(parents=True)
            os.link(blob, alias)
            ids.append(object_id)
            rows.append({"id": object_id, "bucket": bucket, "hash": hash_hex, "size": len(content),
                         "content_type": "text/plain", "filename": filename, "metadata": "{}", "now": now})
        os.sync()  # the files are durable before any row refers to them, as in a put

        def insert(tx: Any) -> None:
            names.ensure_bucket(tx, bucket, now, names.Owner.current())
            for row in rows:
                tx.execute("insert into blobs (hash, size, created_at) values (:hash, :size, :now)", row)
                tx.execute(
                    "insert into objects (id, bucket, hash, size, content_type, filename, metadata, created_at, "
                    "touched_at, expires_at) values (:id, :bucket, :hash, :size, :content_type, :filename, "
                    ":metadata, :now, :now, null)", row)

        store.catalog.run(insert, attempts=1)
    return ids


def check_fsck(store: Path, expected_objects: int) -> None:
    done = subprocess.run([ASSETFS, "--store", str(store), "fsck", "--json"], capture_output=True, text=True)
    try:
        summary = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise BenchError(f"assetfs fsck gave no JSON summary (exit {done.returncode}): {done.stderr.strip()}") from None
    summary = summary.get("summary", summary)
    if done.returncode != 0 or not summary.get("clean") or summary.get("objects") != expected_objects:
        raise BenchError(f"the benchmark store is not clean after the bulk fixture (fsck exit {done.returncode}): "
                         f"{json.dumps(summary)[:2000]}")


def make_folders_like(model: Path, target: Path) -> None:
    """A folder of empty folders named as `model`'s (the floor's copy of the native many/)."""
    target.mkdir()
    for name in os.listdir(model):
        os.mkdir(target / name)


def copy_tree_in(source: Path, target: Path) -> float:
    start = time.perf_counter()
    run_command(["cp", "-r", str(source), str(target)])
    return round(time.perf_counter() - start, 2)


# mounting ---------------------------------------------------------------------------------


def mounted_at(path: Path) -> str | None:
    """The filesystem type mounted at `path` per /proc/mounts, or None."""
    for mountpoint, fstype in proc_mounts():
        if mountpoint == str(path):
            return fstype
    return None


def proc_mounts() -> list[tuple[str, str]]:
    result = []
    with open("/proc/mounts", encoding="utf-8", errors="surrogateescape") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) >= 3:
                result.append((re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[1]), fields[2]))
    return result


def clear_stale_mounts() -> None:
    """A run killed with SIGKILL leaves its mounts: detach them (their daemons then exit)."""
    for path in MOUNTS_DIR.glob("*"):
        if mounted_at(path) is not None:
            print(f"bench: {path} is still mounted by an earlier run: unmounting it", file=sys.stderr)
            subprocess.run(["fusermount3", "-u", "-z", str(path)], capture_output=True)


@contextlib.contextmanager
def mounted(paths: Paths) -> Iterator[dict[str, Any]]:
    """bindfs and assetfs mounted for the body; both unmounted afterwards whatever happens."""
    clear_stale_mounts()
    info: dict[str, Any] = {
        "bindfs_version": run_command(["bindfs", "--version"]).strip(),
        "fusermount3": run_command(["fusermount3", "-V"]).strip(),
        "disk_read_ahead_kb": read_ahead_kb(WORK_DIR),
    }
    problems: list[str] = []
    with contextlib.ExitStack() as stack:
        stack.callback(check_nothing_left, problems)
        for path in paths.mnt.values():
            path.mkdir(parents=True, exist_ok=True)
        for view, command in (("bindfs", ["bindfs", "-f", str(paths.native), str(paths.mnt["bindfs"])]),
                              ("floor", [sys.executable, str(FLOORFS), str(paths.mnt["floor"])])):
            process = None
            try:
                process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                           stderr=paths.logs[view].open("wb"), start_new_session=True)
            finally:  # registered even when interrupted right after the start
                stack.callback(unmount_process, paths.mnt[view], process, problems)
            wait_mounted(paths.mnt[view], lambda: process.poll() is None, paths.logs[view])
        daemon: list[int] = []
        stack.callback(unmount_assetfs, paths.mnt["assetfs"], daemon, problems)
        output = run_command([ASSETFS, "--store", str(paths.store), "mount", str(paths.mnt["assetfs"]),
                              "--log-file", str(paths.logs["assetfs"])])
        match = re.search(r"daemon pid (\d+)", output)
        if match:
            daemon.append(int(match[1]))
        wait_mounted(paths.mnt["assetfs"], lambda: True, paths.logs["assetfs"])
        info["bindfs_read_ahead_kb"] = read_ahead_kb(paths.mnt["bindfs"])
        info["assetfs_read_ahead_kb"] = read_ahead_kb(paths.mnt["assetfs"])
        yield info
    if problems:
        raise BenchError("; ".join(problems))


def wait_mounted(path: Path, alive: Callable[[], bool], log: Path, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if mounted_at(path) is not None:
            os.stat(path)
            return
        if not alive():
            break
        time.sleep(0.05)
    raise BenchError(f"{path} did not get mounted: {tail(log)}")


def tail(log: Path, lines: int = 5) -> str:
    try:
        return " | ".join(log.read_text(errors="replace").strip().splitlines()[-lines:]) or "(empty log)"
    except OSError:
        return "(no log)"


def read_ahead_kb(path: Path) -> int | None:
    device = os.stat(path).st_dev
    try:
        return int(Path(f"/sys/class/bdi/{os.major(device)}:{os.minor(device)}/read_ahead_kb").read_text())
    except (OSError, ValueError):
        return None


def unmount(path: Path, command: list[str], problems: list[str]) -> None:
    """Unmount with `command`; when it stays busy, detach lazily (`fusermount3 -u -z`)."""
    for attempt in range(5):
        if mounted_at(path) is None:
            return
        done = subprocess.run([*command, str(path)], capture_output=True, text=True)
        if done.returncode == 0 and mounted_at(path) is None:
            return
        time.sleep(0.5 * (attempt + 1))
    subprocess.run(["fusermount3", "-u", "-z", str(path)], capture_output=True)
    problems.append(f"{path} was busy and had to be detached lazily")


def unmount_process(path: Path, process: subprocess.Popen | None, problems: list[str]) -> None:
    """Unmount a filesystem served by a process started here (bindfs, the floor); wait for it."""
    unmount(path, ["fusermount3", "-u"], problems)
    if process is not None:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            problems.append(f"{process.args[0]} (pid {process.pid}) did not exit after the unmount: terminated")
            process.terminate()
            process.wait(timeout=10)


def unmount_assetfs(path: Path, daemon: list[int], problems: list[str]) -> None:
    unmount(path, [ASSETFS, "umount"], problems)
    for pid in daemon:  # the daemon closes the store after the unmount: wait for it
        if not wait_exit(pid, 60):
            problems.append(f"the assetfs daemon (pid {pid}) did not exit after the unmount: sent SIGTERM")
            os.kill(pid, signal.SIGTERM)
            wait_exit(pid, 10)


def wait_exit(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state == "Z":
            return True
        time.sleep(0.1)
    return False


def check_nothing_left(problems: list[str]) -> None:
    """The last step on the way out: no mount of ours may remain; say what went wrong."""
    left = [mountpoint for mountpoint, _ in proc_mounts() if mountpoint.startswith(str(MOUNTS_DIR) + "/")]
    if left:
        problems.append(f"still mounted after the suite: {', '.join(left)}")
    else:
        for path in MOUNTS_DIR.glob("*"):
            with contextlib.suppress(OSError):
                path.rmdir()
        with contextlib.suppress(OSError):
            MOUNTS_DIR.rmdir()
    for problem in problems:
        print(f"bench: mount suite: {problem}", file=sys.stderr)
    if not left:
        print("bench: mounts unmounted, none left in /proc/mounts", file=sys.stderr)


# the measurements -------------------------------------------------------------------------


class Stamp:
    """A setup step: rewrite the first bytes of each source file with a new run number."""

    numbers = itertools.count()

    def __init__(self, files: list[Path]) -> None:
        self.files = files

    def __call__(self) -> None:
        mark = f"run {next(self.numbers):011d}\n".encode()
        assert len(mark) == STAMP_SIZE
        for path in self.files:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.pwrite(fd, mark, 0)
            finally:
                os.close(fd)


def pause() -> None:
    time.sleep(FUSE_TIMEOUT_PAUSE)


def aside_within(folder: Path) -> Callable[[Path], None]:
    """Set a copy aside inside the same view (a rename through the mount, so its kernel
    caches stay right)."""
    numbers = itertools.count()

    def move(path: Path) -> None:
        aside = folder / "set-aside"
        aside.mkdir(exist_ok=True)
        path.rename(aside / f"{next(numbers)}-{path.name}")

    return move


def set_asides_for(paths: Paths) -> dict[str, Callable[[Path], None]]:
    return {"native": set_aside, **{view: aside_within(paths.root[view]) for view in ("bindfs", "floor", "assetfs")}}


def dd(path: Path) -> list[str]:
    return ["dd", f"if={path}", "of=/dev/null", "bs=1M"]


def measure_all(paths: Paths, args: argparse.Namespace) -> list[dict[str, Any]]:
    return [
        read_group(paths, args, cold=True),
        read_group(paths, args, cold=False),
        copy_big_group(paths, args),
        copy_small_group(paths, args),
        rsync_small_group(paths, args),
        stat_group(paths, args),
        list_group(paths, args),
    ]


def read_group(paths: Paths, args: argparse.Namespace, cold: bool) -> dict[str, Any]:
    group = Group(
        title=f"read: sequential read (dd bs=1M) of a {format_size(args.mount_size)} file (assetfs: an object), "
              f"{'cold' if cold else 'warm'} cache",
        nbytes=args.mount_size,
        contenders=[Contender(view, [dd(paths.view_read[view])]) for view in VIEWS],
        baselines=["native"],
    )
    measure(group, args.repeat, list(paths.view_read.values()), cold)
    minimum = 0.6 if cold else 0.9
    return record(group, speed_goal(group, f"assetfs >= {minimum}x native", minimum))


def copy_big_group(paths: Paths, args: argparse.Namespace) -> dict[str, Any]:
    stamp = Stamp([paths.big_src])
    targets = {view: paths.root[view] / f"copy-{view}.bin" for view in VIEWS}

    def contender(label: str, view: str, then_sync: bool = False) -> Contender:
        commands = [["cp", str(paths.big_src), str(targets[view])]]
        if then_sync:
            commands.append(["sync", "-f", str(targets[view])])
        return Contender(label, commands, setup=stamp, teardown=targets[view].unlink)

    group = Group(
        title=f"cp: one {format_size(args.mount_size)} file of new content into the view",
        nbytes=args.mount_size,
        contenders=[contender("native", "native"), contender("native + sync -f", "native", then_sync=True),
                    contender("bindfs", "bindfs"), contender("assetfs", "assetfs")],
        baselines=["native", "native + sync -f"],
    )
    measure(group, args.repeat, [paths.big_src], args.cold)
    return record(group, speed_goal(group, "assetfs >= 0.5x native", 0.5))


def copy_small_group(paths: Paths, args: argparse.Namespace) -> dict[str, Any]:
    group = small_files_group(paths, args, "cp -r", lambda source, target: ["cp", "-r", str(source), str(target)])
    return record(group, time_goal(group, "assetfs takes <= 1.5x the floor's time", 1.5, "floor"))


def rsync_small_group(paths: Paths, args: argparse.Namespace) -> dict[str, Any]:
    group = small_files_group(paths, args, "rsync -a",
                              lambda source, target: ["rsync", "-a", f"{source}/", f"{target}/"])
    return record(group, time_goal(group, "assetfs takes <= 2x the floor's time", 2.0, "floor"))


def small_files_group(paths: Paths, args: argparse.Namespace, tool: str,
                      command: Callable[[Path, Path], list[str]]) -> Group:
    """The small files copied into each view by `command(source, target)`, timed. Copies are
    set aside, not deleted, between runs: see common.set_aside."""
    small_files = sorted(paths.small_src.iterdir())
    stamp = Stamp(small_files)
    targets = {view: paths.root[view] / f"{tool.split()[0]}-{view}" for view in SMALL_VIEWS}
    set_asides = set_asides_for(paths)

    def contender(label: str, view: str, then_sync: bool = False) -> Contender:
        commands = [command(paths.small_src, targets[view])]
        if then_sync:
            commands.append(["sync", "-f", str(targets[view])])
        return Contender(label, commands, setup=stamp, teardown=lambda: set_asides[view](targets[view]))

    group = Group(
        title=f"{tool}: {args.mount_files} files of {format_size(SMALL_FILE_SIZE)} (new content) into the view",
        nbytes=args.mount_files * SMALL_FILE_SIZE,
        contenders=[contender("native", "native"), contender("native + sync -f", "native", then_sync=True),
                    *(contender(view, view) for view in SMALL_VIEWS[1:])],
        baselines=["native", "native + sync -f", "floor"],
    )
    measure(group, args.repeat, small_files, args.cold)
    return group


def stat_group(paths: Paths, args: argparse.Namespace) -> dict[str, Any]:
    group = Group(
        title=f"find | xargs stat: the {args.mount_files} files (after the 1 s FUSE timeouts)",
        nbytes=0,
        contenders=[Contender(view, [["sh", "-c", 'find "$1" -print0 | xargs -0 stat', "sh",
                                      str(paths.view_small[view])]], setup=pause) for view in SMALL_VIEWS],
        baselines=["native", "floor"],
    )
    measure(group, args.repeat, [], args.cold)
    return record(group, time_goal(group, "assetfs takes <= 2x the native time", 2.0))


def list_group(paths: Paths, args: argparse.Namespace) -> dict[str, Any]:
    group = Group(
        title=f"ls -l: a bucket of {args.mount_objects} objects (native and floor: a folder of {args.mount_objects} "
              "folders; after the 1 s FUSE timeouts)",
        nbytes=0,
        contenders=[Contender(view, [["ls", "-l", str(paths.view_many[view])]], setup=pause) for view in SMALL_VIEWS],
        baselines=["native", "floor"],
    )
    measure(group, args.repeat, [], args.cold)
    return record(group, time_goal(group, "assetfs takes <= 3x the native time", 3.0))


def record(group: Group, goals: list[dict[str, Any]]) -> dict[str, Any]:
    """The group's rows, goals and each row's time as a multiple of native's (and the floor's,
    when the floor ran)."""
    result = group_record(group, goals)
    result["time_ratios"] = {row["label"]: round(row["median_s"] / group.median("native"), 3) for row in result["rows"]}
    if "floor" in group.seconds:
        result["floor_time_ratios"] = {row["label"]: round(row["median_s"] / group.median("floor"), 3)
                                       for row in result["rows"]}
    return result


def speed_goal(group: Group, text: str, minimum: float) -> list[dict[str, Any]]:
    value = group.ratio("assetfs", "native")
    return [{"goal": text, "value": round(value, 3), "minimum": minimum, "unit": "x native speed",
             "met": value >= minimum}]


def time_goal(group: Group, text: str, maximum: float, baseline: str = "native") -> list[dict[str, Any]]:
    value = group.median("assetfs") / group.median(baseline)
    return [{"goal": text, "value": round(value, 3), "maximum": maximum, "unit": f"x {baseline} time",
             "met": value <= maximum}]


def machine_line() -> str:
    """A short description of this machine for the chart."""
    host = machine(WORK_DIR if WORK_DIR.exists() else RESULTS_DIR)
    return (f"{host['nproc']} CPUs ({host['cpu']}), {host['memory_gib']} GiB, {host['filesystem']} on "
            f"{host['device']}, kernel {host['kernel']}, {time.strftime('%Y-%m-%d')}")


# summary and chart ------------------------------------------------------------------------

SHORT_NAMES = ("read cold", "read warm", "cp big file", "cp -r small files", "rsync -a small files",
               "find | xargs stat", "ls -l many")


def summarize(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    summary = []
    for name, group in zip(SHORT_NAMES, groups, strict=True):
        rows = {row["label"]: row for row in group["rows"]}
        check = group["goals"][0] if group["goals"] else None
        floor = rows.get("floor")
        summary.append({
            "measurement": name,
            "native_s": rows["native"]["median_s"],
            "native_mb_per_s": rows["native"]["mb_per_s"] if group["bytes"] else None,
            "bindfs_s": rows["bindfs"]["median_s"],
            "floor_s": floor["median_s"] if floor else None,
            "assetfs_s": rows["assetfs"]["median_s"],
            "bindfs_speed_ratio": rows["bindfs"]["ratios"]["native"],
            "floor_speed_ratio": floor["ratios"]["native"] if floor else None,
            "assetfs_speed_ratio": rows["assetfs"]["ratios"]["native"],
            "bindfs_time_ratio": group["time_ratios"]["bindfs"],
            "floor_time_ratio": group["time_ratios"]["floor"] if floor else None,
            "assetfs_time_ratio": group["time_ratios"]["assetfs"],
            "assetfs_floor_time_ratio": group["floor_time_ratios"]["assetfs"] if floor else None,
            "goal": check["goal"] if check else None,
            "met": check["met"] if check else None,
        })
    return summary


def print_summary(summary: list[dict[str, Any]]) -> None:
    """The goals, MET / NOT MET, the speed ratios to native (> 1 is faster than native) and
    assetfs's time as a multiple of native's and of the floor's."""
    header = ["measurement", "native s", "bindfs x", "floor x", "assetfs x", "assetfs time x native",
              "assetfs time x floor", "goal"]

    def number(value: float | None) -> str:
        return "—" if value is None else f"{value:.2f}"

    lines = [[item["measurement"], f"{item['native_s']:.3f}", number(item["bindfs_speed_ratio"]),
              number(item["floor_speed_ratio"]), number(item["assetfs_speed_ratio"]),
              number(item["assetfs_time_ratio"]), number(item["assetfs_floor_time_ratio"]),
              "—" if item["goal"] is None else f"{item['goal']}: {'MET' if item['met'] else 'NOT MET'}"]
             for item in summary]
    widths = [max(len(line[column]) for line in [header, *lines]) for column in range(len(header))]
    last = len(header) - 1
    print("\nmount suite: speed ratios to native (native time / time; > 1 is faster), assetfs's time ratios, goals",
          file=sys.stderr)
    for line in [header, *lines]:
        print("  " + "  ".join(cell.ljust(width) if column in (0, last) else cell.rjust(width)
                               for column, (cell, width) in enumerate(zip(line, widths, strict=True))),
              file=sys.stderr)


def write_chart(summary: list[dict[str, Any]], args: argparse.Namespace) -> Path | None:
    """bench-results/mount.png: bindfs's, the floor's and assetfs's speed relative to native, per
    measurement; the goals of cp -r and rsync -a are relative to the floor, so their marks sit
    at the floor's speed divided by the allowed factor."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench: matplotlib is missing, no chart (scripts/bench installs it: pip install -e '.[bench]')",
              file=sys.stderr)
        return None
    size = format_size(args.mount_size)
    labels = [f"read {size}\ncold cache", f"read {size}\nwarm cache", f"cp {size}",
              f"cp -r {args.mount_files}\nfiles of 4 KiB", f"rsync -a {args.mount_files}\nfiles of 4 KiB",
              f"find | xargs stat\n{args.mount_files} files", f"ls -l\n{args.mount_objects} objects"]
    floor = {item["measurement"]: item["floor_speed_ratio"] for item in summary}
    goal_minimums = [0.6, 0.9, 0.5, floor["cp -r small files"] / 1.5, floor["rsync -a small files"] / 2, 1 / 2, 1 / 3]
    figure, axes = plt.subplots(figsize=(11, 5.5), dpi=110)
    width = 0.27
    views = ((-width, "bindfs", "#8c8c8c"), (0.0, "floor", "#9ae6b4"), (width, "assetfs", "#2b6cb0"))
    for offset, view, colour in views:
        present = [(number, item[f"{view}_speed_ratio"]) for number, item in enumerate(summary)
                   if item[f"{view}_speed_ratio"] is not None]
        bars = axes.bar([number + offset for number, _ in present], [value for _, value in present], width,
                        label="pyfuse3 floor" if view == "floor" else view, color=colour)
        for bar, (_, value) in zip(bars, present, strict=True):
            axes.annotate(f"{value:.2f}×", (bar.get_x() + bar.get_width() / 2, value), ha="center", va="bottom",
                          fontsize=7, xytext=(0, 2), textcoords="offset points")
    for number, minimum in enumerate(goal_minimums):
        axes.hlines(minimum, number + width / 2, number + 3 * width / 2, colors="#c53030", linewidth=2,
                    label="assetfs goal" if number == 0 else None)
    axes.axhline(1.0, color="black", linewidth=0.8, linestyle="--", label="native = 1")
    axes.set_yscale("log")
    lowest = min(value for item in summary for view in ("bindfs", "floor", "assetfs")
                 if (value := item[f"{view}_speed_ratio"]) is not None)
    ticks = [tick for tick in (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3) if tick >= min(0.01, lowest / 2) / 3]
    axes.set_ylim(ticks[0], 3)
    axes.set_yticks(ticks, [f"{tick:g}" for tick in ticks])
    axes.set_xticks(range(len(summary)), labels)
    axes.set_ylabel("speed relative to native (native time / time)")
    axes.set_title(f"assetfs, bindfs and the pyfuse3 floor vs the native folder on the same disk "
                   f"(medians of {args.repeat})")
    figure.text(0.01, 0.01, f"{machine_line()}; cp, cp -r and rsync write new content; stat and ls -l after the "
                "1 s FUSE timeouts", fontsize=7, color="#555555")
    axes.legend(loc="upper right", fontsize=8)
    axes.grid(axis="y", which="major", alpha=0.3)
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    figure.savefig(CHART)
    plt.close(figure)
    print(f"chart written to {CHART.relative_to(ROOT)}", file=sys.stderr)
    return CHART
