"""What every benchmark suite shares: timing contenders, cache control and the result writer.

A suite measures *contenders* (commands doing the same work) in alternation, so a slow
moment of the machine hits all of them alike, and reports medians. Ratios compare speeds:
ratio = speed of the row / speed of the column's contender, so > 1 means the row is faster.
"""

import argparse
import importlib.util
import itertools
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = ROOT / "bench-results"
WORK_DIR = RESULTS_DIR / "work"  # the data a suite writes; run.py deletes it after the suite
ASSETFS = str(Path(sys.executable).parent / "assetfs")
MB = 1_000_000  # throughput is in decimal units: MB/s, GB/s
SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
RATIO_NOTE = "ratio = speed of the row / speed of the column's contender (> 1: the row is faster); MB = 10^6 bytes"


class BenchError(Exception):
    """A benchmark cannot run or a contender failed; the message says why."""


def nothing() -> None:
    pass


@dataclass
class Contender:
    label: str
    commands: list[list[str]]  # run one after the other; the total time is measured
    setup: Callable[[], None] = nothing  # before each run, not timed
    teardown: Callable[[], None] = nothing  # after each run, not timed
    cwd: Path | None = None

    def describe(self) -> str:
        return " && ".join(shlex.join(command) for command in self.commands)


@dataclass
class Group:
    """One comparison: contenders doing the same work on `nbytes` of data."""

    title: str
    nbytes: int
    contenders: list[Contender]
    baselines: list[str]  # labels of the contenders every row is compared with
    seconds: dict[str, list[float]] = field(default_factory=dict)
    loads: list[float] = field(default_factory=list)  # the 1-minute load average before each run

    def median(self, label: str) -> float:
        return statistics.median(self.seconds[label])

    def ratio(self, label: str, baseline: str) -> float:
        return self.median(baseline) / self.median(label)

    def mb_per_s(self, label: str) -> float:
        return self.nbytes / self.median(label) / MB


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


def parse_size(text: str) -> int:
    """'1G', '64M', '512KiB' or a byte count; units are binary (1K = 1024)."""
    match = re.fullmatch(r"(\d+)\s*([KMGT]?)(?:i?B)?", text.strip(), re.IGNORECASE)
    if not match or int(match[1]) == 0:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: use a positive byte count or e.g. 64M, 1G")
    return int(match[1]) * SIZE_UNITS[match[2].upper()]


def format_size(nbytes: int) -> str:
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        scale = SIZE_UNITS[unit[0]]
        if nbytes >= scale and nbytes % scale == 0:
            return f"{nbytes // scale} {unit}"
    return f"{nbytes} bytes"


def run_command(command: list[str]) -> str:
    """Run a command and return its output; a failure raises BenchError with its stderr."""
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"{shlex.join(command)} failed (exit {done.returncode}): {done.stderr.strip()}")
    return done.stdout


def drop_caches() -> None:
    """Write back dirty data, then empty the page cache, dentries and inodes (needs root)."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as error:
        raise BenchError(f"cannot drop the page cache ({error.strerror}); cold runs need root") from None


_set_aside_numbers = itertools.count()


def set_aside(path: Path) -> None:
    """Move a run's output out of the way; it is deleted with the work folder after the suite.

    Deleting many files between runs would slow down the next run: on ext4 without a
    journal, creating a file skips every inode freed in the last 60-300 s
    (fs/ext4/ialloc.c, recently_deleted), and `cp -r` of 10,000 files went from 0.5 s
    to 2-7 s, all in the kernel, right after 10,000 files were deleted.
    """
    aside = WORK_DIR / "set-aside"
    aside.mkdir(exist_ok=True)
    path.rename(aside / f"{next(_set_aside_numbers)}-{path.name}")


def read_files(paths: Iterable[Path]) -> None:
    """Read files once so that they are in the page cache."""
    for path in paths:
        with open(path, "rb", buffering=0) as stream:
            while stream.read(1 << 24):
                pass


def _timed_run(contender: Contender) -> float:
    start = time.perf_counter()
    for command in contender.commands:
        # stdout goes to /dev/null, as in `cat FILE > /dev/null`; stderr is kept for errors
        try:
            done = subprocess.run(command, cwd=contender.cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except OSError as error:  # e.g. E2BIG: too many file names for one command line
            raise BenchError(f"{contender.label}: cannot run {command[0]}: {error.strerror}") from None
        if done.returncode != 0:
            raise BenchError(f"{contender.label}: {shlex.join(command)} failed (exit {done.returncode}): "
                             f"{done.stderr.decode(errors='replace').strip()}")
    return time.perf_counter() - start


def _prepared_run(contender: Contender, sources: list[Path], cold: bool) -> float:
    """One run of a contender with its setup and teardown; only the commands are timed."""
    contender.setup()
    if cold:
        drop_caches()
    else:
        os.sync()
        read_files(sources)
    seconds = _timed_run(contender)
    contender.teardown()
    return seconds


def measure(group: Group, repeat: int, sources: list[Path], cold: bool, warm_up: bool = False) -> None:
    """Time every contender `repeat` times, in turns (the order rotates each round).

    Before each timed run dirty data is written back, and the `sources` are read into the
    page cache (warm) or the whole cache is dropped (cold). With `warm_up`, every contender
    first runs once untimed, so no timed run is the first of its kind.
    """
    contenders = group.contenders
    group.seconds = {contender.label: [] for contender in contenders}
    group.loads = []
    print(group.title, file=sys.stderr)
    if warm_up:
        for contender in contenders:
            print(f"  {contender.label} (warm-up): {_prepared_run(contender, sources, cold):.3f} s", file=sys.stderr)
    for round_number in range(repeat):
        shift = round_number % len(contenders)
        for contender in contenders[shift:] + contenders[:shift]:
            seconds = _prepared_run(contender, sources, cold)
            group.loads.append(os.getloadavg()[0])
            group.seconds[contender.label].append(seconds)
            print(f"  {contender.label}: {seconds:.3f} s (load {group.loads[-1]:.2f})", file=sys.stderr)


def goal(text: str, value: float, minimum: float, unit: str) -> dict[str, Any]:
    return {"goal": text, "value": round(value, 3), "minimum": minimum, "unit": unit, "met": value >= minimum}


def goal_at_most(text: str, value: float, maximum: float, unit: str) -> dict[str, Any]:
    return {"goal": text, "value": round(value, 3), "maximum": maximum, "unit": unit, "met": value <= maximum}


def load_suite(name: str) -> ModuleType:
    """The suite module `<name>.py` of this folder, loaded by path: `import gc` would give the
    interpreter's built-in gc module, which always wins over a file of that name."""
    path = Path(__file__).with_name(f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def project_module(name: str) -> ModuleType:
    """A module of the project, such as `serve.service`: this folder is first on sys.path,
    and in it `serve` is the serve suite's file."""
    here = Path(__file__).resolve().parent
    saved = sys.path[:]
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != here]
    try:
        return importlib.import_module(name)
    finally:
        sys.path[:] = saved


def group_record(group: Group, goals: list[dict[str, Any]]) -> dict[str, Any]:
    rows = [
        {
            "label": contender.label,
            "command": contender.describe(),
            "seconds": [round(seconds, 4) for seconds in group.seconds[contender.label]],
            "median_s": round(group.median(contender.label), 4),
            "mb_per_s": round(group.mb_per_s(contender.label), 1),
            "ratios": {baseline: round(group.ratio(contender.label, baseline), 3) for baseline in group.baselines},
        }
        for contender in group.contenders
    ]
    record = {"title": group.title, "bytes": group.nbytes, "baselines": group.baselines, "rows": rows, "goals": goals}
    if group.loads:  # other work on the machine slows every contender, not always alike
        record["load_average"] = {"min": round(min(group.loads), 2), "median": round(statistics.median(group.loads), 2),
                                  "max": round(max(group.loads), 2)}
    return record


def load_average() -> list[float]:
    """Runnable processes over 1, 5 and 15 minutes: other work on the machine skews results."""
    return [round(load, 2) for load in os.getloadavg()]


def machine(path: Path) -> dict[str, Any]:
    """The machine the numbers come from; `path` is where the data was written."""
    fstype, device = run_command(["findmnt", "-n", "-o", "FSTYPE,SOURCE", "--target", str(path)]).split()[:2]
    memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    cpu = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu[1] if cpu else platform.machine(),
        "memory_gib": round(memory_bytes / (1 << 30), 1),
        "filesystem": fstype,
        "device": device,
        "work_dir": str(path),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_at_start": load_average(),
    }


def write_results(suite: str, result: dict[str, Any]) -> None:
    """Write `bench-results/<suite>.json` and print the result as tables."""
    RESULTS_DIR.mkdir(exist_ok=True)
    target = RESULTS_DIR / f"{suite}.json"
    target.write_text(json.dumps(result, indent=2) + "\n")
    print(format_result(suite, result))
    print(f"written to {target.relative_to(ROOT)}")


def format_result(suite: str, result: dict[str, Any]) -> str:
    host = result["machine"]
    lines = [
        f"suite {suite}, {result['finished_at']}",
        f"machine: {host['nproc']} CPUs ({host['cpu']}), {host['memory_gib']} GiB memory, "
        f"{host['filesystem']} on {host['device']}, kernel {host['kernel']}, "
        f"load average {host['load_average_at_start'][0]:.2f} at start, {host['load_average_at_end'][0]:.2f} at end",
        "parameters: " + ", ".join(f"{key}={value}" for key, value in result["parameters"].items()),
        RATIO_NOTE,
    ]
    for group in result["groups"]:
        # a group is either contenders timed by `measure` (rows), or a suite's own table
        table = _cells(group["table"]) if "table" in group else _table(group)
        lines += ["", group["title"], *table, *(f"  {note}" for note in group.get("notes", []))]
        if "load_average" in group:
            load = group["load_average"]
            lines.append(f"  load average during the runs: median {load['median']:.2f} "
                         f"(min {load['min']:.2f}, max {load['max']:.2f}; {host['nproc']} CPUs)")
        for check in group["goals"]:
            verdict = "MET" if check["met"] else "NOT MET"
            lines.append(f"  goal: {check['goal']}: {verdict} ({check['value']} {check['unit']})")
    return "\n".join(lines)


def _cells(table: dict[str, Any]) -> list[str]:
    """A suite's own table: {"header": [...], "rows": [[...], ...]}, cells already text."""
    return _aligned(table["header"], table["rows"])


def _table(group: dict[str, Any]) -> list[str]:
    header = ["contender", "median s", "min-max s", "MB/s", *(f"x {baseline}" for baseline in group["baselines"])]
    body = [
        [
            row["label"],
            f"{row['median_s']:.3f}",
            f"{min(row['seconds']):.3f}-{max(row['seconds']):.3f}",
            f"{row['mb_per_s']:.0f}" if row["mb_per_s"] >= 100 else f"{row['mb_per_s']:.1f}",
            *(f"{row['ratios'][baseline]:.2f}" for baseline in group["baselines"]),
        ]
        for row in group["rows"]
    ]
    return _aligned(header, body)


def _aligned(header: list[str], body: list[list[str]]) -> list[str]:
    widths = [max(len(line[column]) for line in [header, *body]) for column in range(len(header))]
    return [
        "  " + "  ".join(cell.ljust(width) if column == 0 else cell.rjust(width)
                         for column, (cell, width) in enumerate(zip(line, widths, strict=True)))
        for line in [header, *body]
    ]
