"""The put suite: `assetfs put` beside `cp` of the same data on the same disk.

Goals (issue 9, point 8, and before it): a put of a new file (512 MiB by default, `--size`)
at >= 0.8x the speed of `cp` + `sync -f` of the same file, and a put of content already
stored at >= 2 GB/s (bound by hashing, so `b3sum` is the ceiling).

A put is durable when it returns and `cp` alone is not, so the goal compares the put with
`cp` followed by `sync -f` (syncfs of the disk it wrote: a plain `sync` would also wait for
whatever else the machine has written); `cp` alone is shown beside them. The whole command
is timed, start-up included. Each put of new content goes into a fresh store (set up
untimed). `--put-case` runs some of the cases only, e.g. `--put-case new` for the issue's.
"""

import argparse
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import (
    ASSETFS,
    WORK_DIR,
    BenchError,
    Contender,
    Group,
    format_size,
    goal,
    group_record,
    measure,
    parse_size,
    positive_int,
    run_command,
    set_aside,
)

BUCKET = "bench"
SMALL_FILE_SIZE = 4096
CHUNK = 16 << 20


CASES = ("new", "stored", "small")  # --put-case: the three groups below, in this order


def add_options(options: argparse._ArgumentGroup) -> None:
    options.add_argument("--size", type=parse_size, default=512 << 20,
                         help="size of the big file, e.g. 64M (default: 512M = 512 MiB, the issue's)")
    options.add_argument("--files", type=positive_int, default=10_000, metavar="N",
                         help="number of 4 KiB files (default: 10000)")
    options.add_argument("--put-case", action="append", choices=CASES,
                         help="run only this case; repeatable (default: all): new = a new big file "
                              "(assetfs put vs cp + sync -f), stored = the big file again, small = the 4 KiB files")


def run(args: argparse.Namespace) -> dict[str, Any]:
    cases = args.put_case or CASES
    big = WORK_DIR / "big.bin"
    small = WORK_DIR / "small"
    if "new" in cases or "stored" in cases:
        write_random_file(big, args.size)
    if "small" in cases:
        write_small_files(small, args.files)
    os.sync()
    groups = []
    if "new" in cases:
        groups.append(new_big_file(big, args))
    if "stored" in cases:
        groups.append(stored_big_file(big, args))
    if "small" in cases:
        groups.append(new_small_files(small, args))
    return {
        "parameters": {
            "cases": ", ".join(case for case in CASES if case in cases),
            "size": format_size(args.size),
            "files": f"{args.files} x {format_size(SMALL_FILE_SIZE)}",
            "repeat": args.repeat,
            "cache": "cold (dropped before each run)" if args.cold else "warm (sources read before each run)",
            "assetfs": ASSETFS,
        },
        "groups": groups,
    }


def new_big_file(big: Path, args: argparse.Namespace) -> dict[str, Any]:
    copy, store = WORK_DIR / "copy.bin", WORK_DIR / "store"
    group = Group(
        title=f"one {format_size(args.size)} file, new content (fresh store each run)",
        nbytes=args.size,
        contenders=[
            Contender("cp", [["cp", str(big), str(copy)]], teardown=lambda: remove(copy)),
            Contender("cp + sync -f", [["cp", str(big), str(copy)], ["sync", "-f", str(copy)]],
                      teardown=lambda: remove(copy)),
            Contender("assetfs put", [put_command(store, [str(big)])], setup=lambda: init_store(store),
                      teardown=checked(store, 1, args.size, then=remove)),
        ],
        baselines=["cp", "cp + sync -f"],
    )
    measure(group, args.repeat, [big], args.cold)
    return group_record(group, [goal("assetfs put at >= 0.8x the speed of cp + sync -f",
                                     group.ratio("assetfs put", "cp + sync -f"), 0.8, "x cp + sync -f")])


def stored_big_file(big: Path, args: argparse.Namespace) -> dict[str, Any]:
    store = WORK_DIR / "store-stored"
    init_store(store)
    run_command(put_command(store, [str(big)]))
    group = Group(
        title=f"one {format_size(args.size)} file already stored (put again into the same store)",
        nbytes=args.size,
        contenders=[
            Contender("cat > /dev/null", [["cat", str(big)]]),
            Contender("b3sum", [["b3sum", str(big)]]),
            Contender("assetfs put, stored", [put_command(store, [str(big)])],
                      teardown=lambda: check_store(store, 1, args.size)),
        ],
        baselines=["b3sum", "cat > /dev/null"],
    )
    measure(group, args.repeat, [big], args.cold)
    remove(store)
    gb_per_s = group.mb_per_s("assetfs put, stored") / 1000
    return group_record(group, [goal("assetfs put of stored content at >= 2 GB/s", gb_per_s, 2.0, "GB/s")])


def new_small_files(small: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Outputs are set aside, not deleted, between runs: see common.set_aside."""
    copy, store = WORK_DIR / "copy", WORK_DIR / "store"
    names = sorted(path.name for path in small.iterdir())
    nbytes = args.files * SMALL_FILE_SIZE
    group = Group(
        title=f"{args.files} files of {format_size(SMALL_FILE_SIZE)}, new content, one command "
              "(fresh store each run)",
        nbytes=nbytes,
        contenders=[
            Contender("cp -r", [["cp", "-r", str(small), str(copy)]], teardown=lambda: set_aside(copy)),
            Contender("cp -r + sync -f", [["cp", "-r", str(small), str(copy)], ["sync", "-f", str(copy)]],
                      teardown=lambda: set_aside(copy)),
            # relative names, run inside the folder: a shorter command line than DIR/* gives
            Contender("assetfs put", [put_command(store, names)], cwd=small, setup=lambda: init_store(store),
                      teardown=checked(store, args.files, nbytes, then=set_aside)),
        ],
        baselines=["cp -r", "cp -r + sync -f"],
    )
    measure(group, args.repeat, [small / name for name in names], args.cold)
    return group_record(group, [])


def write_random_file(path: Path, size: int) -> None:
    with open(path, "wb") as stream:
        remaining = size
        while remaining:
            remaining -= stream.write(os.urandom(min(CHUNK, remaining)))


def write_small_files(folder: Path, count: int) -> None:
    """`count` files of random (so distinct) content."""
    folder.mkdir()
    for number in range(count):
        (folder / f"f{number:06d}").write_bytes(os.urandom(SMALL_FILE_SIZE))


def put_command(store: Path, files: list[str]) -> list[str]:
    return [ASSETFS, "--store", str(store), "put", BUCKET, *files, "--no-name"]


def init_store(store: Path) -> None:
    run_command([ASSETFS, "--store", str(store), "init"])


def check_store(store: Path, objects: int, nbytes: int) -> None:
    """Prove the put stored what it was given: `objects` objects and `nbytes` bytes of blobs."""
    total = json.loads(run_command([ASSETFS, "--store", str(store), "stats", "--json"]))["total"]
    if (total["objects"], total["physical_bytes"]) != (objects, nbytes):
        raise BenchError(f"{store} holds {total['objects']} objects and {total['physical_bytes']} bytes "
                         f"after the put; expected {objects} and {nbytes}")


def checked(store: Path, objects: int, nbytes: int, then: Callable[[Path], None]) -> Callable[[], None]:
    """A teardown: check what the put stored, then remove or set aside the store."""

    def teardown() -> None:
        check_store(store, objects, nbytes)
        then(store)

    return teardown


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()
