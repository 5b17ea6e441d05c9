"""Mounting and unmounting: the daemon's life, and the checks that give one-line errors.

`mount` runs the daemon in the foreground, or forks it into the background and returns once
the mount answers requests (the daemon writes "ready" into a pipe; an error message instead
when it could not mount). In the foreground under systemd (`Type=notify`) the daemon sends
`READY=1` at that same moment (fusefs/notify.py). SIGINT and SIGTERM reach the trio loop
through trio's signal receiver, which ends pyfuse3's main loop; the daemon then unmounts
(`pyfuse3.close(unmount=True)`) and closes the store. SIGHUP reopens the log file
(fusefs/daemonlog.py) and leaves the mount alone. `umount` unmounts an assetfs mount only,
live or stale (its daemon died): the type in /proc/self/mountinfo (`fuse.assetfs`, from the
subtype the mount sets) must say so. Root unmounts with umount2(2), whose errno tells a busy
mount from other failures; anyone else goes through the setuid `fusermount3 -u`, whose
reasons come as text only and are shown as they are.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyfuse3
import trio

from casgc.runner import Collector
from cas import privacy, readers, syscalls
from cas.errors import BadInput, MountBusy, StoreError
from cas.mounts import HEARTBEAT_S, LiveMount
from cas.store import Store
from cas.writeback import JOURNAL_PREFIX, Journal, recover_all
from fusefs.daemonlog import LogFile, configure_logging
from fusefs import pidfile
from fusefs.errors import inject_fault
from fusefs.letgo import LetGo
from fusefs.notify import notify
from fusefs.operations import Operations
from fusefs.readahead import READ_AHEAD_KIB, raise_read_ahead
from fusefs.writebehind import WriteBehind

log = logging.getLogger("assetfs.mount")
FSNAME = "assetfs"
FSTYPE = f"fuse.{FSNAME}"  # the type an assetfs mount has in /proc/self/mountinfo (subtype=assetfs)
LOG_NAME = "mount.log"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
REOPEN_SIGNAL = signal.SIGHUP
FUSERMOUNT_TIMEOUT_S = 60


# checks ------------------------------------------------------------------------------------


def mounted_at(mountpoint: Path) -> str | None:
    """The filesystem type of the topmost mount at `mountpoint` (per /proc/self/mountinfo:
    `fuse.assetfs` for an assetfs mount, live or stale), or None when nothing is mounted there."""
    wanted = os.path.abspath(mountpoint)
    found = None
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as mounts:
        for line in mounts:  # in mount order: a later line is stacked on an earlier one
            fields, separator, rest = line.partition(" - ")
            fields = fields.split()
            if separator and len(fields) >= 5 and _unescape(fields[4]) == wanted:
                found = rest.split()[0]
    return found


def _unescape(field: str) -> str:
    """/proc/self/mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code in ("\\040", "\\011", "\\012", "\\134"):
        field = field.replace(code, chr(int(code[1:], 8)))
    return field


def check_mountpoint(mountpoint: Path, clear_stale: bool = False) -> Path:
    """The mountpoint's absolute path, once it is a folder with nothing mounted on it. With
    `clear_stale`, a stale assetfs mount there (its daemon died: a service manager restarts
    the mount after a crash) is unmounted first; its journal is recovered by the new mount."""
    path = Path(os.path.abspath(mountpoint))
    try:
        os.stat(path)
        os.statvfs(path)  # never answered from the kernel's cache: a dead daemon shows here
    except FileNotFoundError:
        raise BadInput(f"{path}: no such folder; create it first (mkdir -p {path})") from None
    except OSError as error:
        if error.errno == errno.ENOTCONN and clear_stale and mounted_at(path) == FSTYPE:
            result = subprocess.run(["fusermount3", "-u", str(path)], capture_output=True, text=True, timeout=60)
            if result.returncode == 0:
                log.warning("unmounted the stale assetfs mount at %s (its daemon had died)", path)
                return check_mountpoint(path)
        if error.errno == errno.ENOTCONN:
            raise BadInput(
                f"{path} is a stale mount whose daemon is gone (transport endpoint is not connected); "
                f"run 'assetfs umount {path}' (or 'fusermount3 -u {path}') and mount again"
            ) from None
        raise BadInput(f"{path}: {error.strerror}") from None
    if not os.path.isdir(path):
        raise BadInput(f"{path} is not a folder")
    mounted = mounted_at(path)
    if mounted == FSTYPE:
        raise BadInput(f"an assetfs mount is at {path} already; 'assetfs umount {path}' unmounts it")
    if mounted is not None:
        raise BadInput(f"{path} is a mount point already ({mounted}); choose an empty folder")
    return path


# mounting ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MountOptions:
    read_only: bool = False
    allow_other: bool = False  # other users may use the mount; the kernel checks modes
    gc: bool = False  # run the garbage collector in the daemon
    kernel: frozenset[str] = frozenset()  # generic mount flags passed on (nosuid, nodev, noexec, noatime)
    clear_stale: bool = False  # unmount a stale assetfs mount at the mountpoint first (a service's restart)


def mount(store_root: Path, mountpoint: Path, options: MountOptions, foreground: bool = False,
          log_file: Path | None = None, pid_file: Path | None = None) -> int | None:
    """Mount the store; in the background returns the daemon's pid once the mount is ready.

    The log goes to `log_file`, else in the background to <store>/mount.log and in the
    foreground to stderr; `pid_file` gets the daemon's pid once the mount is ready (for a
    logrotate `postrotate` that sends SIGHUP) and is removed when it ends; an existing file
    there is refused unless it is a stale pid file (fusefs/pidfile.py)."""
    if options.read_only and options.gc:
        raise BadInput("a read-only mount writes nothing, so it cannot run the collector: drop --gc (gc), or run "
                       "'assetfs gc --watch' where the store may be written")
    path = check_mountpoint(mountpoint, options.clear_stale)
    store_root = Path(os.path.abspath(store_root))
    in_store = log_file is None and not foreground
    if in_store:
        log_file = store_root / LOG_NAME
    pid_path = Path(os.path.abspath(pid_file)) if pid_file is not None else None
    pidfile.check(pid_path)  # before the log file is created: a refused mount leaves nothing
    sink = LogFile(log_file, privacy.file_mode(store_root))
    try:
        sink.check()
    except BadInput as error:
        if not in_store:
            raise
        raise BadInput(f"{error}; a user who may only read the store mounts it with --log-file FILE "
                       "(-o log=FILE) or --foreground") from None
    if foreground:
        sink.attach()
        configure_logging()
        serve(store_root, path, options, ready=lambda: _foreground_ready(path, pid_path), sink=sink,
              pid_file=pid_path)
        return None
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the daemon
        os.close(read_end)
        _daemonize(sink)
        os._exit(_run_daemon(store_root, path, options, write_end, sink, pid_path))
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode("utf-8", errors="replace").strip()
    if message == "ready":
        return pid
    os.waitpid(pid, 0)
    raise StoreError(message or f"the mount daemon ended before the mount was ready; see {sink.path}")


def _foreground_ready(mountpoint: Path, pid_file: Path | None) -> None:
    pidfile.record(pid_file)
    if notify(f"READY=1\nSTATUS=mounted at {mountpoint}"):
        log.info("told the service manager that the mount is ready")


def _daemonize(sink: LogFile) -> None:
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)
    try:
        sink.attach()
    except BadInput:
        pass  # checked before the fork; gone since: the daemon runs without a log
    os.chdir("/")


def _run_daemon(store_root: Path, mountpoint: Path, options: MountOptions, ready_fd: int, sink: LogFile,
                pid_file: Path | None) -> int:
    def ready() -> None:
        pidfile.record(pid_file)
        os.write(ready_fd, b"ready\n")
        os.close(ready_fd)

    configure_logging()
    try:
        serve(store_root, mountpoint, options, ready, sink=sink, pid_file=pid_file)
        return 0
    except BaseException as error:  # the parent shows this one line
        log.exception("the mount failed")
        message = str(error) if isinstance(error, (BadInput, StoreError)) else f"mount failed: {error}"
        try:
            os.write(ready_fd, message.encode("utf-8", errors="replace"))
            os.close(ready_fd)
        except OSError:
            pass  # ready was sent already
        return 1


def _fault_from_environment() -> None:
    """ASSETFS_MOUNT_FAULT=operation:count makes handlers raise (tests of the EIO path)."""
    spec = os.environ.get("ASSETFS_MOUNT_FAULT")
    if spec:
        operation, _, count = spec.partition(":")
        inject_fault(operation, int(count or "1"))


def serve(store_root: Path, mountpoint: Path, options: MountOptions, ready: Callable[[], None],
          sink: LogFile | None = None, pid_file: Path | None = None) -> None:
    """Mount, call `ready`, serve until unmounted or signalled, then unmount and clean up."""
    _fault_from_environment()
    sink = sink or LogFile(None, 0)
    try:
        with Store.open(store_root, read_only=options.read_only) as store:
            if options.read_only:  # writes nothing: no row, no liveness lock, no journal (docs/upgrade.md)
                reader = readers.hold(store.root, store.catalog)  # writers free no version it may show (cas/readers.py)
                try:
                    _serve(store, None, store_root, mountpoint, options, ready, sink)
                finally:
                    reader.release()
                return
            live = LiveMount.register(store)  # before anything else: from here on no one recovers it
            try:
                _serve(store, live, store_root, mountpoint, options, ready, sink)
            finally:
                live.end(forget=not _journal_left(store, live))
    finally:
        pidfile.remove(pid_file)


def _journal_left(store: Store, live: LiveMount) -> bool:
    """Whether the mount's journal folder is still there (files not committed): then its
    row stays, and the next mount or `fsck --repair` recovers it once it is dead."""
    return (store.tree.tmp / f"{JOURNAL_PREFIX}{live.id}").exists()


def _serve(store: Store, live: LiveMount | None, store_root: Path, mountpoint: Path, options: MountOptions,
           ready: Callable[[], None], sink: LogFile) -> None:
    """`live` is None for a read-only mount, which has nothing to recover or journal and
    checks no name let go (it lets none go)."""
    if live is not None:
        committed, failed = recover_all(store)
        if committed or failed:
            log.info("committed %d files closed in a mount that ended (%d failed)", committed, failed)
    fuse_options = set(pyfuse3.default_options) | {f"fsname={FSNAME}", f"subtype={FSNAME}"}
    if options.read_only:
        fuse_options.add("ro")
    if options.allow_other:
        fuse_options.add("allow_other")
    fuse_options |= options.kernel
    writebehind = WriteBehind(store, Journal.start(store.tree.tmp, live.id) if live is not None else None)
    operations = Operations(store, writebehind, read_only=options.read_only)
    let_go = LetGo(store) if live is not None else None
    try:
        if live is not None:
            dropped = operations.view.drop_unlinked_nodes()
            if dropped:
                log.info("deleted %d nodes without a name left by an earlier mount", dropped)
        pyfuse3.init(operations, str(mountpoint), fuse_options)
    except BaseException as error:
        if writebehind.journal is not None:
            writebehind.journal.close()
        if isinstance(error, RuntimeError):
            raise StoreError(f"cannot mount at {mountpoint}: {error}") from None
        raise
    collector = Collector(store) if options.gc else None
    try:
        if collector is not None:
            collector.start()
            log.info("garbage collector running every %ss", store.config.gc.interval)
        trio.run(_main, store_root, mountpoint, ready, operations, live, let_go, sink)
    finally:
        if collector is not None:
            collector.stop()
        pyfuse3.close(unmount=True)
        operations.close()
        if let_go is not None:
            let_go.check()
        log.info("unmounted %s", mountpoint)


async def _main(store_root: Path, mountpoint: Path, ready: Callable[[], None], operations: Operations,
                live: LiveMount | None, let_go: LetGo | None, sink: LogFile) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(_on_signals, sink)
        # Logged once SIGHUP is received here: a logrotate that reacts to this line finds
        # the daemon ready to reopen its log.
        log.info("mounted %s at %s%s", store_root, mountpoint, "" if live is not None else " read-only")
        if live is not None and let_go is not None:
            nursery.start_soon(_heartbeat, live)
            nursery.start_soon(operations.writebehind.run)
            nursery.start_soon(let_go.run)
        nursery.start_soon(operations.contents.run)
        nursery.start_soon(_when_serving, mountpoint, ready)
        await pyfuse3.main()
        nursery.cancel_scope.cancel()


async def _heartbeat(live: LiveMount) -> None:
    while True:
        await trio.sleep(HEARTBEAT_S)
        try:
            await trio.to_thread.run_sync(live.beat)
        except Exception:
            log.exception("could not record the mount's heartbeat")


async def _when_serving(mountpoint: Path, ready: Callable[[], None]) -> None:
    """Once the kernel's INIT is answered (a stat of the mountpoint gets through): raise the
    read-ahead (INIT resets it), then report ready."""
    try:
        device = (await trio.to_thread.run_sync(os.stat, mountpoint)).st_dev
    except OSError as error:
        log.warning("the mount did not answer a stat: %s", error)
        return
    if raise_read_ahead(f"{os.major(device)}:{os.minor(device)}"):
        log.info("read-ahead raised to %d KiB: sequential reads arrive as 1 MiB requests", READ_AHEAD_KIB)
    ready()


async def _on_signals(sink: LogFile, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """SIGINT and SIGTERM unmount; SIGHUP reopens the log file (logrotate) and nothing else."""
    with trio.open_signal_receiver(*STOP_SIGNALS, REOPEN_SIGNAL) as signals:
        task_status.started()
        async for number in signals:
            if number == REOPEN_SIGNAL:
                sink.reopen()
                continue
            log.info("%s: unmounting", signal.Signals(number).name)
            notify("STOPPING=1")
            pyfuse3.terminate()
            return


# unmounting --------------------------------------------------------------------------------


def umount(mountpoint: Path) -> None:
    """Unmount the assetfs mount at `mountpoint`, live or stale (its daemon died). Anything
    else mounted there is refused (BadInput, exit code 2) and left alone: root may unmount
    any filesystem."""
    path = Path(os.path.abspath(mountpoint))
    _check_assetfs_mount(path)
    _commit_closed_files(path)
    _check_assetfs_mount(path)  # again, just before unmounting: the fsync may have taken a while
    if os.geteuid() == 0:
        _umount2(path)
    else:
        _fusermount_u(path)


BUSY_HINT = "close the files and shells using it, then run 'assetfs umount {path}' again (or 'fusermount3 -uz' to detach it lazily)"


def _umount2(path: Path) -> None:
    try:
        syscalls.umount2(str(path), syscalls.UMOUNT_NOFOLLOW)
    except OSError as error:
        if error.errno == errno.EBUSY:
            raise MountBusy(f"{path} is busy: " + BUSY_HINT.format(path=path)) from None
        raise StoreError(f"cannot unmount {path}: {error.strerror}", errno=error.errno) from None


def _fusermount_u(path: Path) -> None:
    try:
        result = subprocess.run(["fusermount3", "-u", str(path)], capture_output=True, text=True,
                                timeout=FUSERMOUNT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise StoreError(f"cannot unmount {path}: fusermount3 -u did not finish in {FUSERMOUNT_TIMEOUT_S} s") from None
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["fusermount3 failed"])[-1]
        raise StoreError(f"cannot unmount {path}: {detail}; if it is busy, " + BUSY_HINT.format(path=path))


def _check_assetfs_mount(path: Path) -> None:
    mounted = mounted_at(path)
    if mounted is None:
        raise BadInput(f"nothing is mounted at {path}")
    if mounted != FSTYPE:
        raise BadInput(f"{path} is not an assetfs mount ({mounted} is mounted there); 'assetfs umount' leaves it alone")


def _commit_closed_files(path: Path) -> None:
    """fsync of the mount's root waits for the files closed so far to be committed, so what
    the user copied in is in the catalog when `umount` returns (not only once the daemon
    exits). A dead daemon, or commits that fail, do not stop the unmount: the journal keeps
    those files for the next mount."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as error:
        log.warning("some files closed in %s could not be committed yet: %s", path, error.strerror)
    finally:
        os.close(fd)
