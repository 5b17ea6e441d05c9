"""Running as a service user, as docs/service.md says: a store owned by `assetfs` and
private to it, the mount's unit command line run as that user with --allow-other (which
needs `user_allow_other` in /etc/fuse.conf), another user reading through the mount, the
collector's unit command line as `assetfs`.

All of it in a private mount namespace (tests/namespace.py): the user `assetfs` (when the
machine has none), `user_allow_other`, a /dev/fuse that users may open (Debian's 0666, when
a container made it 0600) and, when this machine's Python lives in a folder other users
cannot enter (pyenv under /root), a view of that Python, are mounted over /etc/passwd,
/etc/group, /etc/fuse.conf, /dev/fuse and that folder inside it only. The machine's files
stay as they were, even if the test is killed."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from namespace import PrivateNamespace, install_mount_helper, private_namespace
from systemd_units import command

USER = "assetfs"


def add_user(namespace: PrivateNamespace, scratch: Path) -> None:
    """The service user, in the namespace's /etc/passwd and /etc/group only."""
    try:
        pwd.getpwnam(USER)
        return  # the machine has one: use it
    except KeyError:
        pass
    passwd, group = Path("/etc/passwd").read_text(), Path("/etc/group").read_text()
    taken = {int(line.split(":")[2]) for text in (passwd, group) for line in text.splitlines() if line.count(":") >= 2}
    number = next(n for n in range(999, 100, -1) if n not in taken)
    (scratch / "passwd").write_text(passwd + f"{USER}:x:{number}:{number}:assetfs service:/nonexistent:/usr/sbin/nologin\n")
    (scratch / "group").write_text(group + f"{USER}:x:{number}:\n")
    for name in ("passwd", "group"):
        os.chmod(scratch / name, 0o644)
        namespace.bind(scratch / name, f"/etc/{name}")


def allow_other_for_users(namespace: PrivateNamespace, scratch: Path) -> None:
    conf = scratch / "fuse.conf"
    text = Path("/etc/fuse.conf").read_text() if Path("/etc/fuse.conf").exists() else ""
    conf.write_text(text + "\nuser_allow_other\n")
    os.chmod(conf, 0o644)
    if not Path("/etc/fuse.conf").exists():
        pytest.skip("/etc/fuse.conf does not exist: nothing to mount user_allow_other over")
    namespace.bind(conf, "/etc/fuse.conf")


def fuse_device_for_users(namespace: PrivateNamespace, scratch: Path) -> None:
    """Debian's udev makes /dev/fuse 0666 (fusermount3 needs it so for a user's mount); a
    container may have it 0600: the namespace gets a 0666 node of the same device."""
    info = os.stat("/dev/fuse")
    if info.st_mode & 0o006 != 0o006:
        node = scratch / "fuse"
        os.mknod(node, 0o666 | stat.S_IFCHR, info.st_rdev)
        os.chmod(node, 0o666)
        namespace.bind(node, "/dev/fuse")


def open_python_to_users(namespace: PrivateNamespace, scratch: Path) -> None:
    """When a folder on the way to this Python is closed to other users (0700 /root holding
    pyenv), show the namespace a world-enterable folder in its place holding only the way on."""
    python = Path(os.path.realpath(sys.executable))
    for folder in python.parents:
        if folder != Path("/") and not os.stat(folder).st_mode & 0o001:
            inner = folder / python.relative_to(folder).parts[0]
            keep = scratch / "keep"
            keep.mkdir()
            namespace.bind(inner, keep)
            namespace.run("mount", "-t", "tmpfs", "-o", "mode=0755,size=1m", "tmpfs", folder)
            namespace.run("mkdir", inner)
            namespace.bind(keep, inner)
            return


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[PrivateNamespace, Path]]:
    """The namespace, and a folder the service user owns (under /tmp: pytest's tmp_path is
    private to root)."""
    base = Path(tempfile.mkdtemp(prefix="assetfs-service-"))
    machine = machine_state()
    try:
        with private_namespace() as namespace:
            add_user(namespace, tmp_path)
            allow_other_for_users(namespace, tmp_path)
            open_python_to_users(namespace, tmp_path)
            fuse_device_for_users(namespace, tmp_path)
            uid = int(namespace.run("id", "-u", USER).stdout)
            gid = int(namespace.run("id", "-g", USER).stdout)
            os.chown(base, uid, gid)
            os.chmod(base, 0o755)
            yield namespace, base
    finally:
        shutil.rmtree(base)
    assert machine_state() == machine, "the machine's files changed"


def machine_state() -> dict[str, object]:
    files = {name: Path(name).read_bytes() for name in ("/etc/passwd", "/etc/group", "/etc/fuse.conf")}
    return {**files, "/dev/fuse": os.stat("/dev/fuse").st_mode}


def as_user(namespace: PrivateNamespace, base: Path, *command: str | Path, user: str = USER,
            check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return namespace.run(*command, user=user, check=check, env={"HOME": str(base), **(env or {})})


def test_a_service_user_owns_the_store_mounts_it_for_others_and_collects(service, database_url):
    namespace, base = service
    store, mountpoint = base / "store", base / "assets"
    assetfs = str(Path(sys.executable).parent / "assetfs")
    init = [assetfs, "--store", store, "init"] + (["--database-url", database_url] if database_url else [])
    as_user(namespace, base, *init)
    info = os.stat(store)
    assert (info.st_uid, info.st_mode & 0o777) == (int(namespace.run("id", "-u", USER).stdout), 0o700)
    denied = as_user(namespace, base, "ls", store, user="nobody", check=False)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr, "the store is its owner's alone"

    source = base / "logo.png"
    source.write_text("a logo\n" * 100)
    os.chmod(source, 0o644)
    as_user(namespace, base, assetfs, "--store", store, "put", "brand", source, "--name", "logo.png")
    as_user(namespace, base, "mkdir", mountpoint)

    # the mount's unit, as systemd runs it: ExecStart as User=assetfs, readiness on NOTIFY_SOCKET
    argv, environment = command("assetfs-mount.service", "ExecStart", store, mountpoint)
    assert "--allow-other" in argv
    notify_path = base / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(notify_path))
        os.chmod(notify_path, 0o777)
        sock.settimeout(20)
        log = open(base / "journal.log", "wb")
        process = subprocess.Popen(
            ["nsenter", f"--target={namespace.pid}", "--mount", "--", *namespace.as_user(USER), *argv],
            env={**os.environ, **environment, "HOME": str(base), "NOTIFY_SOCKET": str(notify_path)},
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd="/")
        log.close()
        try:
            try:
                ready = sock.recv(4096).decode().split("\n")
            except TimeoutError:
                raise AssertionError(f"no READY=1; the mount said:\n{(base / 'journal.log').read_text()}") from None
            assert "READY=1" in ready, ready
            line = next(line for line in namespace.mountinfo().splitlines() if line.split()[4] == str(mountpoint))
            assert "fuse.assetfs" in line and "allow_other" in line, line
            # another user reads through the mount (allow_other; the kernel checks the modes)
            read = as_user(namespace, base, "cat", mountpoint / "brand" / "logo.png", user="nobody")
            assert read.stdout == source.read_text()
            listed = as_user(namespace, base, "ls", mountpoint / "brand", user="nobody").stdout.split()
            assert "logo.png" in listed

            # the collector's unit command line, as User=assetfs
            gc_argv, gc_environment = command("assetfs-gc.service", "ExecStart", store)
            collected = as_user(namespace, base, *gc_argv, env=gc_environment, check=False)
            assert collected.returncode == 0, collected.stdout + collected.stderr

            process.send_signal(signal.SIGTERM)  # systemctl stop
            assert process.wait(timeout=60) == 0, (base / "journal.log").read_text()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    journal = (base / "journal.log").read_text()
    assert "Traceback" not in journal and " ERROR " not in journal, journal
    assert all(line.split()[4] != str(mountpoint) for line in namespace.mountinfo().splitlines())
    fsck = as_user(namespace, base, assetfs, "--store", store, "fsck", check=False)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_an_fstab_line_with_setuid_mounts_as_the_service_user(service, database_url, tmp_path):
    namespace, base = service
    install_mount_helper(namespace, tmp_path)
    store, mountpoint, pid_file = base / "store", base / "assets", base / "mount.pid"
    assetfs = str(Path(sys.executable).parent / "assetfs")
    as_user(namespace, base, assetfs, "--store", store, "init",
            *(["--database-url", database_url] if database_url else []))
    source = base / "font.woff2"
    source.write_text("a font\n")
    os.chmod(source, 0o644)
    as_user(namespace, base, assetfs, "--store", store, "put", "fonts", source)
    as_user(namespace, base, "mkdir", mountpoint)
    fstab = tmp_path / "fstab"
    fstab.write_text(f"{store} {mountpoint} fuse.assetfs setuid={USER},allow_other,pidfile={pid_file},"
                     "_netdev,nofail 0 0\n")

    namespace.run("mount", "--fstab", fstab, mountpoint)
    pid = int(pid_file.read_text())
    uid = int(namespace.run("id", "-u", USER).stdout)
    status = Path(f"/proc/{pid}/status").read_text()
    assert f"Uid:\t{uid}\t{uid}\t{uid}\t{uid}" in status, "the daemon runs as the service user"
    read = as_user(namespace, base, "cat", mountpoint / "fonts" / "font.woff2", user="nobody")
    assert read.stdout == "a font\n"

    namespace.run("umount", mountpoint)
    deadline = time.monotonic() + 30
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}")
    assert all(line.split()[4] != str(mountpoint) for line in namespace.mountinfo().splitlines())

    refused = namespace.run("mount", "-t", "fuse.assetfs", store, mountpoint, "-o", "setuid=nosuchuser", check=False)
    assert (refused.returncode, refused.stderr) == (2, "mount.fuse.assetfs: -o setuid=nosuchuser: no such user\n")
