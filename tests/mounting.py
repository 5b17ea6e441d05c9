"""Real mounts for the tests: `assetfs mount --foreground` in a subprocess, waited for, and
always unmounted afterwards (fusermount3 -u, even when the test failed); only the process
started here is ever signalled."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from conftest import ASSETFS
from fusefs.mount import mounted_at

READY_TIMEOUT = 30.0


@dataclass
class Mount:
    path: Path
    store_root: Path
    process: subprocess.Popen
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start_mount(store_root: Path, mountpoint: Path, log: Path, *args: str, env: dict[str, str] | None = None) -> Mount:
    mountpoint.mkdir(exist_ok=True)
    with open(log, "ab") as sink:
        process = subprocess.Popen(
            [ASSETFS, "--store", str(store_root), "mount", "--foreground", *args, str(mountpoint)],
            stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        )
    mount = Mount(mountpoint, store_root, process, log)
    deadline = time.monotonic() + READY_TIMEOUT
    while mounted_at(mountpoint) is None:
        if process.poll() is not None:
            raise AssertionError(f"the mount exited with {process.returncode}:\n{mount.log_text()}")
        if time.monotonic() > deadline:
            stop_mount(mount)
            raise AssertionError(f"the mount was not ready after {READY_TIMEOUT}s:\n{mount.log_text()}")
        time.sleep(0.05)
    return mount


def unmount(path: Path) -> None:
    """Unmount whatever is at `path`; lazily when it is busy, so nothing is left behind."""
    if mounted_at(path) is None:
        return
    if subprocess.run(["fusermount3", "-u", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["fusermount3", "-uz", str(path)], capture_output=True)


def stop_mount(mount: Mount) -> int:
    """Unmount and wait for the daemon; returns its exit code."""
    unmount(mount.path)
    try:
        return mount.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        mount.process.send_signal(signal.SIGTERM)
        try:
            return mount.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            mount.process.kill()
            return mount.process.wait()
