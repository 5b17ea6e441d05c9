"""Run benchmark suites and write bench-results/<suite>.json. Started by scripts/bench.

A suite is a module with `run(args) -> dict` returning {"parameters": ..., "groups": [...]}
(see common.group_record); register it in SUITES and give its options a group below.
Data is written under bench-results/work/ (the disk under test), removed afterwards.
"""

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any

import common
import mount
import put

SUITES: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "put": put.run,
    "gc": common.load_suite("gc").run,  # by path: `import gc` gives the built-in module
    "mount": mount.run,
    "serve": common.load_suite("serve").run,  # by path: `import serve` would find the server package
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Benchmark assetfs beside standard tools on the same disk. " + common.RATIO_NOTE,
    )
    parser.add_argument("--suite", action="append", choices=sorted(SUITES),
                        help="suite to run; repeatable (default: every suite)")
    parser.add_argument("--repeat", type=common.positive_int, default=5, metavar="N",
                        help="timed runs of each contender; the median is reported (default: 5)")
    parser.add_argument("--cold", action="store_true",
                        help="drop the page cache before each timed run (needs root); "
                             "by default the sources are read into it first")
    put.add_options(parser.add_argument_group("put suite"))
    mount_options = parser.add_argument_group(
        "mount suite (native folder, bindfs, the pyfuse3 floor, assetfs mount; needs root)")
    mount_options.add_argument("--mount-size", type=common.parse_size, default=1 << 30, metavar="SIZE",
                               help="size of the file read and copied, e.g. 64M (default: 1G = 1 GiB)")
    mount_options.add_argument("--mount-files", type=common.positive_int, default=2_000, metavar="N",
                               help="number of 4 KiB files copied (cp -r, rsync -a) and stat'ed (default: 2000)")
    mount_options.add_argument("--mount-objects", type=common.positive_int, default=100_000, metavar="N",
                               help="objects in the bucket listed with ls -l (default: 100000)")
    common.load_suite("gc").add_options(parser.add_argument_group("gc suite"))
    common.load_suite("serve").add_options(parser.add_argument_group("serve suite (wrk against nginx and assetfs serve)"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cold and os.geteuid() != 0:
        print("bench: --cold drops the page cache, which needs root", file=sys.stderr)
        return 2
    for name in args.suite or SUITES:
        shutil.rmtree(common.WORK_DIR, ignore_errors=True)  # left over by an interrupted run
        common.WORK_DIR.mkdir(parents=True)
        machine = common.machine(common.WORK_DIR)
        print(f"bench: running suite {name}", file=sys.stderr)
        try:
            result = SUITES[name](args)
        except common.BenchError as error:
            print(f"bench: suite {name} failed: {error}", file=sys.stderr)
            return 1
        finally:
            shutil.rmtree(common.WORK_DIR)
        machine["load_average_at_end"] = common.load_average()
        finished_at = time.strftime("%Y-%m-%d %H:%M:%S %z")
        common.write_results(name, {"suite": name, "finished_at": finished_at, "machine": machine, **result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
