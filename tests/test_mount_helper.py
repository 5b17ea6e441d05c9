"""`mount -t fuse.assetfs STORE MOUNTPOINT`, an fstab line and `umount MOUNTPOINT`, with the
real mount(8) and umount(8) and the helper installed in /sbin the way scripts/start does
(tests/namespace.py: in a private mount namespace, so the machine's /sbin stays as it was).
The options map onto the mount (ro, allow_other, the kernel flags, log=, pidfile=); bad
input is one line and mounts nothing (fusefs/helper.py)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from conftest import run_cli
from fusefs.helper import Request, parse
from mounting import put
from namespace import PrivateNamespace, install_mount_helper, private_namespace

TIMESTAMPED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (INFO|WARNING|ERROR|DEBUG) assetfs\.")


@pytest.fixture
def namespace(tmp_path: Path):
    with private_namespace() as namespace:
        install_mount_helper(namespace, tmp_path)
        yield namespace


def fuse_line(namespace: PrivateNamespace, mountpoint: Path) -> str | None:
    lines = [line for line in namespace.mountinfo().splitlines() if line.split()[4] == str(mountpoint)]
    return lines[-1] if lines else None


def wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 30
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}"), "the daemon did not exit after umount"


def test_mount_t_maps_its_options_and_umount_unmounts(namespace, store_root, tmp_path):
    source = tmp_path / "photo.jpg"
    source.write_bytes(b"jpeg bytes" * 1000)
    put(store_root, "photos", source, "--name", "2024/photo.jpg")
    mountpoint, log, pid_file = tmp_path / "mnt", tmp_path / "log" / "mount.log", tmp_path / "mount.pid"
    mountpoint.mkdir()
    log.parent.mkdir()

    namespace.run("mount", "-t", "fuse.assetfs", store_root, mountpoint,
                  "-o", f"ro,allow_other,noexec,noatime,log={log},pidfile={pid_file}")
    line = fuse_line(namespace, mountpoint)
    assert line is not None and " - fuse.assetfs assetfs " in line, line
    mount_flags, super_options = line.split()[5].split(","), line.split(" - ")[1].split()[2].split(",")
    assert {"ro", "noexec", "noatime", "nosuid", "nodev"} <= set(mount_flags), line
    assert "allow_other" in super_options, line
    assert fuse_line_outside(mountpoint) is None, "the namespace kept the mount to itself"

    inside = namespace.path(mountpoint)
    assert (inside / "photos" / "2024" / "photo.jpg").read_bytes() == source.read_bytes()
    refused = namespace.run("sh", "-c", f"echo x > {mountpoint}/photos/new.txt", check=False)
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr

    pid = int(pid_file.read_text())
    lines = log.read_text().splitlines()
    assert lines and all(TIMESTAMPED.match(line) for line in lines), lines
    assert any(f"mounted {store_root} at {mountpoint}" in line for line in lines)

    namespace.run("umount", mountpoint)
    assert fuse_line(namespace, mountpoint) is None
    wait_gone(pid)
    assert not pid_file.exists(), "the daemon removes its pid file"
    assert "unmounted" in log.read_text()


def fuse_line_outside(mountpoint: Path) -> str | None:
    with open("/proc/self/mountinfo") as mountinfo:
        return next((line for line in mountinfo if line.split()[4] == str(mountpoint)), None)


def test_an_fstab_line_mounts_and_files_copied_in_are_stored_after_umount(namespace, store_root, tmp_path):
    mountpoint, pid_file = tmp_path / "assets", tmp_path / "mount.pid"
    mountpoint.mkdir()
    fstab = tmp_path / "fstab"
    fstab.write_text(f"# an operator's line\n{store_root} {mountpoint} fuse.assetfs "
                     f"defaults,allow_other,nofail,_netdev,x-systemd.after=network-online.target,"
                     f"pidfile={pid_file} 0 0\n")
    namespace.run("mount", "--fstab", fstab, mountpoint)
    assert fuse_line(namespace, mountpoint) is not None
    pid = int(pid_file.read_text())

    original = tmp_path / "logo.svg"
    original.write_text("<svg/>\n" * 100)
    namespace.run("mkdir", mountpoint / "brand")
    namespace.run("cp", original, mountpoint / "brand" / "logo.svg")
    namespace.run("umount", mountpoint)
    wait_gone(pid)

    listed = run_cli(store_root, "ls", "brand/").stdout.decode()
    assert "brand/logo.svg" in listed, listed
    object_id = listed.split()[0]
    assert run_cli(store_root, "cat", object_id).stdout == original.read_bytes()
    assert run_cli(store_root, "fsck", check=None).returncode == 0


@pytest.mark.parametrize("source, options, message", [
    ("/no/such/store", "rw", "/no/such/store is not an assetfs store (no such folder; the mount's source)"),
    ("{store}", "rw,colour=blue", "-o colour=blue: unknown option"),
    ("{store}", "rw,turbo", "-o turbo: unknown option"),
    ("{store}", "log=relative.log", "-o log=: an absolute path is needed"),
    ("{store}", "log=/no/such/folder/mount.log", "cannot open the log file /no/such/folder/mount.log"),
    ("{store}", "pidfile=/no/such/folder/mount.pid", "cannot write the pid file /no/such/folder/mount.pid"),
    ("store", "rw", "the source must be the store's absolute path"),
])
def test_bad_input_is_one_line_and_mounts_nothing(namespace, store_root, tmp_path, source, options, message):
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    result = namespace.run("mount", "-t", "fuse.assetfs", source.format(store=store_root), mountpoint,
                           "-o", options, check=False)
    assert result.returncode == 2, result
    assert result.stderr.startswith("mount.fuse.assetfs: ") and message in result.stderr, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert fuse_line(namespace, mountpoint) is None
    assert not (tmp_path / "relative.log").exists()


def test_a_refused_pidfile_creates_no_log_file(namespace, store_root, tmp_path):
    mountpoint, log, config = tmp_path / "mnt", tmp_path / "mount.log", store_root / "assetfs.toml"
    mountpoint.mkdir()
    before = config.read_bytes()
    for pid_file in ("/no/such/folder/mount.pid", config):
        result = namespace.run("mount", "-t", "fuse.assetfs", store_root, mountpoint,
                               "-o", f"log={log},pidfile={pid_file}", check=False)
        assert result.returncode == 2, result
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert fuse_line(namespace, mountpoint) is None
        assert not log.exists(), "the pid file is checked before the log file is created"
    assert config.read_bytes() == before


def test_options_map_onto_the_mount():
    request = parse(["/srv/store", "/srv/assets", "-n", "-o",
                     "rw,dev,suid,exec,atime,nosuid,nodev,noexec,noatime,allow_other,gc,log=/var/log/a.log,"
                     "pidfile=/run/a.pid,setuid=assetfs,nofail,_netdev,noauto,user,"
                     "x-systemd.requires=network.target,comment=x",
                     "-t", "fuse.assetfs"])
    assert request == Request(Path("/srv/store"), Path("/srv/assets"), read_only=False, allow_other=True, gc=True,
                              kernel={"nosuid", "nodev", "noexec", "noatime"}, log=Path("/var/log/a.log"),
                              pidfile=Path("/run/a.pid"), setuid="assetfs")
    assert parse(["/s", "/m", "-o", "rw,ro"]).read_only and not parse(["/s", "/m", "-o", "ro,rw"]).read_only
    assert parse(["/s", "/m", "-s", "-o", "unknown,also=1"]) == Request(Path("/s"), Path("/m")), "-s: sloppy"
    assert parse(["/s", "/m", "-f", "-v"]).fake
