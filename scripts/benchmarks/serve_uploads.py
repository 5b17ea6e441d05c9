"""The serve suite's concurrent uploads: `--serve-uploads` bodies of `--serve-upload-size`
each, all at once, to `assetfs serve`, with the peak resident memory of the server's
processes (issue 10: 200 uploads of 10 MB, "server memory stays bounded").

The bodies stream from the client (httpx, one connection each, distinct content so each is
a new blob); the server's peak is its processes' summed VmRSS, sampled every 20 ms, and the
kernel's own peak (VmHWM, reset through /proc/PID/clear_refs just before). The bound the
design gives (docs/http.md): each of the `UPLOAD_THREADS` threads holds the store's two
staging buffers, and its upload what was received ahead (`READ_AHEAD`, one more piece, and
the piece being copied; a piece is at most uvicorn's high-water mark and one read); every
connection holds what uvicorn reads before it stops reading (the same); the rest of the
bodies wait in the kernel's socket buffers and the client.
"""

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT

import common
from cas.blobtree import CHUNK

READ_AHEAD = common.project_module("serve.body").READ_AHEAD
UPLOAD_THREADS = common.project_module("serve.service").UPLOAD_THREADS

MIB = 1 << 20
READ = 256 * 1024  # one read of a socket by uvloop at most
SLACK = 64 * MIB  # the catalog's caches, the allocator's slack


def server_processes(pid: int) -> list[int]:
    """The server and its workers (uvicorn's children with --workers N)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *map(int, children)]


def _status_bytes(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise common.BenchError(f"/proc/{pid}/status has no {key}")


class RssSampler(threading.Thread):
    """The largest sum of the processes' VmRSS seen while it runs."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.02):
            self.peak = max(self.peak, sum(_status_bytes(pid, "VmRSS") for pid in self.pids))


async def _upload_all(url: str, token: str, count: int, size: int) -> list[str]:
    block = os.urandom(MIB)

    async def body(n: int):  # distinct per upload: its number and the piece's in each piece
        for offset in range(0, size, MIB):
            yield (n.to_bytes(4, "big") + (offset // MIB).to_bytes(4, "big") + block)[:min(MIB, size - offset)]

    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    headers = {"Authorization": f"Bearer {token}", "Content-Length": str(size)}
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(600)) as client:
        async def one(n: int) -> str:
            answer = await client.post(url, content=body(n), headers=headers, params={"name": f"concurrent/{n}.bin"})
            if answer.status_code != 201:
                raise common.BenchError(f"upload {n}: {answer.status_code} {answer.text[:200]}")
            return answer.json()["hash"]

        return await asyncio.gather(*(one(n) for n in range(count)))


def measure(url: str, token: str, server_pid: int, count: int, size: int) -> dict[str, Any]:
    """Upload `count` bodies of `size` bytes at once; the record of the group."""
    pids = server_processes(server_pid)
    for pid in pids:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = sum(_status_bytes(pid, "VmRSS") for pid in pids)
    sampler = RssSampler(pids)
    sampler.start()
    started = time.perf_counter()
    try:
        hashes = asyncio.run(_upload_all(url, token, count, size))
    finally:
        sampler.done.set()
        sampler.join()
    seconds = time.perf_counter() - started
    if len(set(hashes)) != count:
        raise common.BenchError(f"{count} uploads of distinct content gave {len(set(hashes))} distinct hashes")
    high_water = sum(_status_bytes(pid, "VmHWM") for pid in pids)
    per_thread = 2 * CHUNK + READ_AHEAD + 2 * (HIGH_WATER_LIMIT + READ)
    bound = before + len(pids) * (UPLOAD_THREADS * per_thread + SLACK) + count * (HIGH_WATER_LIMIT + READ)
    peak = max(sampler.peak, high_water)
    mib = lambda nbytes: f"{nbytes / MIB:.0f}"  # noqa: E731
    return {
        "title": f"{count} concurrent uploads of {common.format_size(size)} (POST /v1, httpx, one connection each)",
        "table": {"header": ["uploads", "MiB each", "seconds", "MB/s in all", "server RSS before MiB",
                             "server peak RSS MiB", "bound MiB"],
                  "rows": [[str(count), f"{size / MIB:g}", f"{seconds:.1f}", f"{count * size / seconds / common.MB:.0f}",
                            mib(before), mib(peak), mib(bound)]]},
        "goals": [common.goal_at_most("server peak RSS within the bound (MiB)", peak / MIB, bound / MIB, "MiB")],
        "notes": [f"{len(pids)} server process(es); bound = RSS before + per process {UPLOAD_THREADS} upload threads "
                  f"x {per_thread / MIB:.1f} MiB (staging buffers, the body received ahead and two pieces) + {SLACK // MIB} MiB, "
                  f"+ per connection {(HIGH_WATER_LIMIT + READ) // 1024} KiB (uvicorn's high-water mark and one read); "
                  f"the bodies in flight were {count * size / MIB:.0f} MiB",
                  f"load average {os.getloadavg()[0]:.2f} after the uploads"],
    }
