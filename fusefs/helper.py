"""`mount.fuse.assetfs`: the helper mount(8) runs for `mount -t fuse.assetfs STORE MOUNTPOINT`
and for an fstab line of type `fuse.assetfs` (docs/service.md).

mount(8) looks for `/sbin/mount.<type>` and runs it as
`mount.fuse.assetfs STORE MOUNTPOINT [-sfnv] [-o OPTIONS] [-t TYPE]`; `scripts/start` links
it there. The helper maps the options onto `assetfs mount` and mounts in the background,
returning once the mount answers, like `assetfs mount`. `umount MOUNTPOINT` needs no helper:
the kernel ends the FUSE connection and the daemon, seeing its mount gone, commits what was
closed and exits.

The options: `ro`/`rw`, `allow_other`, `gc` (the collector in the daemon), `log=FILE`,
`pidfile=FILE`, `setuid=USER` (as mount.fuse3's: run as USER, the store's owner, with
USER's groups, from before the store is looked at; the mount then goes through fusermount3,
and `allow_other` needs `user_allow_other` in /etc/fuse.conf); `nosuid`, `nodev`, `noexec` and `noatime` are passed to the kernel; what
only mount(8) or fstab use (`defaults`, `noauto`, `nofail`, `_netdev`, `user`, `x-*`…) and
the defaults `suid`, `dev`, `exec`, `atime` (mount(8) adds them; an asset store keeps
FUSE's safe `nosuid,nodev`) are ignored. Anything else is bad input, one line, exit 2,
unless `-s` (sloppy) was given.
"""

from __future__ import annotations

import getopt
import os
import pwd
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cas.errors import AssetfsError, BadInput
from cas.locate import MOUNT_SOURCE, StoreChoice, check_store, system_config_file

PROG = "mount.fuse.assetfs"
USAGE = f"usage: {PROG} STORE MOUNTPOINT [-sfnv] [-o OPTIONS] (as mount -t fuse.assetfs runs it)"
KERNEL = frozenset({"nosuid", "nodev", "noexec", "noatime"})
DEFAULTS = frozenset({"suid", "dev", "exec", "atime", "rw", "async"})
FOR_MOUNT = frozenset({"defaults", "auto", "noauto", "user", "nouser", "users", "owner", "group", "nofail",
                       "_netdev", "default_permissions", "relatime"})
FLAGS = frozenset({"ro", "allow_other", "gc"})
PATHS = ("log", "pidfile")


@dataclass
class Request:
    store: Path
    mountpoint: Path
    read_only: bool = False
    allow_other: bool = False
    gc: bool = False
    kernel: set[str] = field(default_factory=set)
    log: Path | None = None
    pidfile: Path | None = None
    setuid: str | None = None
    fake: bool = False
    verbose: bool = False


def parse(argv: list[str]) -> Request:
    """The helper's arguments as mount(8) passes them; BadInput for anything else."""
    try:
        flags, positional = getopt.gnu_getopt(argv, "sfnvo:t:N:")
    except getopt.GetoptError as error:
        raise BadInput(f"{error}; {USAGE}") from None
    if len(positional) != 2:
        raise BadInput(USAGE)
    source, mountpoint = positional
    if not source.startswith("/"):
        raise BadInput(f"the source must be the store's absolute path, got {source!r}")
    request = Request(Path(source), Path(os.path.abspath(mountpoint)))
    sloppy = any(flag == "-s" for flag, _ in flags)
    for flag, value in flags:
        if flag == "-f":
            request.fake = True
        elif flag == "-v":
            request.verbose = True
        elif flag == "-t" and value not in ("fuse.assetfs", "assetfs"):
            raise BadInput(f"-t {value}: this helper mounts fuse.assetfs only")
        elif flag == "-o":
            for option in filter(None, value.split(",")):
                _apply(request, option, sloppy)
    return request


def _apply(request: Request, option: str, sloppy: bool) -> None:
    name, has_value, value = option.partition("=")
    if name in PATHS and has_value:
        if not value.startswith("/"):
            raise BadInput(f"-o {name}=: an absolute path is needed, got {value!r}")
        setattr(request, name, Path(value))
    elif name == "setuid" and has_value:
        request.setuid = value
    elif has_value and (name == "comment" or name.startswith("x-")):
        pass  # fstab's and systemd's own
    elif has_value:
        if not sloppy:
            raise BadInput(f"-o {option}: unknown option (known: {known()})")
    elif option == "ro":
        request.read_only = True
    elif option == "rw":
        request.read_only = False
    elif option in FLAGS:
        setattr(request, option, True)
    elif option in KERNEL:
        request.kernel.add(option)
    elif option in DEFAULTS or option in FOR_MOUNT or option.startswith("x-"):
        pass
    elif not sloppy:
        raise BadInput(f"-o {option}: unknown option (known: {known()})")


def known() -> str:
    return ", ".join(["ro", "rw", "allow_other", "gc", "log=FILE", "pidfile=FILE", "setuid=USER", *sorted(KERNEL)])


def become(name: str) -> None:
    """setuid=USER: from here on this process (and the daemon it forks) is USER, with USER's
    groups and home, as mount.fuse3 does for its `setuid=` option."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise BadInput(f"-o setuid={name}: no such user") from None
    if os.geteuid() == entry.pw_uid:
        return
    if os.geteuid() != 0:
        raise BadInput(f"-o setuid={name}: only root can mount as another user")
    os.initgroups(name, entry.pw_gid)
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    os.environ.update(HOME=entry.pw_dir, USER=name, LOGNAME=name)


def run(request: Request) -> str | None:
    """Mount as asked; the line to print with -v."""
    from fusefs.mount import MountOptions, mount

    if request.setuid is not None:
        become(request.setuid)
    store = check_store(StoreChoice(request.store, MOUNT_SOURCE, system_config_file()))
    if request.fake:
        return None
    options = MountOptions(read_only=request.read_only, allow_other=request.allow_other, gc=request.gc,
                           kernel=frozenset(request.kernel))
    pid = mount(store, request.mountpoint, options, log_file=request.log, pid_file=request.pidfile)
    return f"mounted {store} at {request.mountpoint} (daemon pid {pid})"


def main(argv: list[str] | None = None) -> None:
    """The entry point: one line on stderr and the error's exit code on failure."""
    try:
        request = parse(sys.argv[1:] if argv is None else argv)
        line = run(request)
    except AssetfsError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as error:  # one line, as the CLI's last line of defence
        if os.environ.get("ASSETFS_DEBUG") == "1":
            raise
        print(f"{PROG}: unexpected error: {type(error).__name__}: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    if request.verbose and line:
        print(line)
