"""A private mount namespace for tests that must change system paths: the mount helper in
/sbin, `user_allow_other` in /etc/fuse.conf, a service user in /etc/passwd. What is
mounted over those paths inside it is never seen outside, so the machine (and the other
tests and mounts on it) is left as it was, even when a test is killed.

Commands run inside with `run` (nsenter; as another user through setpriv, without PAM).
The test process reads the namespace's files through /proc/PID/root. `close` ends every
process in the namespace (all started by the test), first with SIGTERM so that mount
daemons unmount, then SIGKILL; with its last process the namespace and its mounts go.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STOP_TIMEOUT = 15.0
SETUP = Path(__file__).resolve().parent.parent / "scripts" / "lib" / "setup.sh"


class PrivateNamespace:
    def __init__(self) -> None:
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", "echo in; exec sleep 3600"],
            stdout=subprocess.PIPE)
        assert self.holder.stdout is not None
        line = self.holder.stdout.readline()  # written after unshare(2): the namespace exists
        self.holder.stdout.close()
        self.pid = self.holder.pid
        if line != b"in\n":
            self.holder.kill()
            raise AssertionError("unshare --mount did not start")
        self.ns = os.readlink(f"/proc/{self.pid}/ns/mnt")
        assert self.ns != os.readlink("/proc/self/ns/mnt"), "not a namespace of its own"

    def run(self, *command: str | Path, user: str | None = None, check: bool = True, timeout: float = 120,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run a command in the namespace (as `user` when given); its output as text."""
        argv = ["nsenter", f"--target={self.pid}", "--mount", "--"]
        if user is not None:
            argv += self.as_user(user)
        argv += [str(part) for part in command]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                env={**os.environ, **(env or {})}, cwd="/")
        if check:
            assert result.returncode == 0, f"{command} exited {result.returncode}:\n{result.stdout}{result.stderr}"
        return result

    def as_user(self, user: str) -> list[str]:
        """setpriv's words for running as `user`, with its primary group and its groups as
        the namespace's /etc/passwd and /etc/group say."""
        gid = self.run("id", "-g", user).stdout.strip()
        return ["setpriv", f"--reuid={user}", f"--regid={gid}", "--init-groups", "--"]

    def bind(self, source: Path, target: Path | str) -> None:
        self.run("mount", "--bind", source, target)

    def path(self, path: Path | str) -> Path:
        """`path` as the namespace sees it, for this (root) process to read."""
        return Path(f"/proc/{self.pid}/root") / Path(path).relative_to("/")

    def mountinfo(self) -> str:
        return Path(f"/proc/{self.pid}/mountinfo").read_text()

    def members(self) -> list[int]:
        """The processes in the namespace."""
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.readlink(f"/proc/{entry}/ns/mnt") == self.ns:
                        found.append(int(entry))
                except OSError:
                    pass  # gone, or a kernel thread
        return found

    def close(self) -> None:
        for number, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, STOP_TIMEOUT)):
            others = [pid for pid in self.members() if pid != self.pid]
            for pid in others:
                try:
                    os.kill(pid, number)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while [pid for pid in self.members() if pid != self.pid] and time.monotonic() < deadline:
                time.sleep(0.1)
        self.holder.kill()
        self.holder.wait(timeout=STOP_TIMEOUT)


@contextmanager
def private_namespace() -> Iterator[PrivateNamespace]:
    namespace = PrivateNamespace()
    try:
        yield namespace
    finally:
        namespace.close()


def install_mount_helper(namespace: PrivateNamespace, scratch: Path) -> None:
    """/sbin/mount.fuse.assetfs in the namespace, installed the way scripts/start does it
    (ensure_mount_helper), into an overlay on /sbin whose upper layer is `scratch`'s."""
    sbin = os.path.realpath("/sbin")
    upper, work = scratch / "sbin-upper", scratch / "sbin-work"
    upper.mkdir()
    work.mkdir()
    namespace.run("mount", "-t", "overlay", "overlay", "-o", f"lowerdir={sbin},upperdir={upper},workdir={work}", sbin)
    namespace.run("bash", "-c", f"set -euo pipefail; source {SETUP}; ensure_mount_helper")
