"""The systemd units of scripts/systemd: `systemd-analyze verify` accepts them without a
complaint, and the command lines they hold work as the units run them. The mount's unit is
`Type=notify`: its daemon sends READY=1 to NOTIFY_SOCKET only once the mount answers, and
STOPPING=1 when SIGTERM (`systemctl stop`) unmounts it; `ExecReload` (SIGHUP) leaves it
mounted. systemd is not PID 1 here: the notification socket is the test's own."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from conftest import run_cli
from fusefs.mount import FSTYPE, mounted_at
from mounting import unmount
from serving import free_port
from systemd_units import command, installed_copy, settings

NOTIFY_TIMEOUT = 60.0


@pytest.mark.parametrize("names", [("assetfs-mount.service",), ("assetfs-gc.service", "assetfs-gc.timer")])
def test_units_verify(tmp_path, names):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd, in scripts/test's packages)")
    copies = [str(installed_copy(name, tmp_path)) for name in names]
    result = subprocess.run([analyze, "verify", *copies], capture_output=True, text=True, timeout=60)
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if any(n in line for n in names)]
    assert result.returncode == 0 and complaints == [], result.stdout + result.stderr


def test_the_units_are_what_docs_say():
    mount, gc, timer = (settings(name) for name in
                        ("assetfs-mount.service", "assetfs-gc.service", "assetfs-gc.timer"))
    assert mount["Type"] == ["notify"] and mount["ExecStart"][0].split()[1:3] == ["mount", "--foreground"]
    assert "NoNewPrivileges" not in mount and "PrivateTmp" not in mount and "ProtectSystem" not in mount, \
        "fusermount3 is setuid, and the mount must be made in the system's mount namespace"
    assert gc["Type"] == ["oneshot"] and gc["ExecStart"][0].split()[1:] == ["gc"]
    assert timer["OnUnitInactiveSec"] == ["10min"]


def receive(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_the_mount_unit_is_ready_only_once_the_mount_answers(store_root, tmp_path):
    mountpoint, log = tmp_path / "assets", tmp_path / "journal.log"
    mountpoint.mkdir()
    argv, environment = command("assetfs-mount.service", "ExecStart", store_root, mountpoint)
    assert environment == {"ASSETFS_STORE": str(store_root)}
    notify_path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, open(log, "wb") as journal:
        sock.bind(str(notify_path))
        sock.settimeout(NOTIFY_TIMEOUT)
        stream = os.fstat(journal.fileno())  # as systemd says which stream is the journal's
        process = subprocess.Popen(argv, env={**os.environ, **environment, "NOTIFY_SOCKET": str(notify_path),
                                              "JOURNAL_STREAM": f"{stream.st_dev}:{stream.st_ino}"},
                                   stdout=journal, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            ready = receive(sock)
            # the moment READY=1 arrives, the mount is there and answers
            assert mounted_at(mountpoint) == FSTYPE, "READY=1 before the mount was made"
            assert os.listdir(mountpoint) == [".trash"] and os.statvfs(mountpoint).f_bsize > 0
            assert "READY=1" in ready, ready

            reload, _ = command("assetfs-mount.service", "ExecReload", store_root, mountpoint, main_pid=process.pid)
            subprocess.run(reload, check=True, timeout=30)
            wait_for_line(log, "SIGHUP")
            assert process.poll() is None and mounted_at(mountpoint) == FSTYPE, "SIGHUP unmounted"
            os.listdir(mountpoint)

            process.send_signal(signal.SIGTERM)  # KillSignal: systemctl stop
            assert "STOPPING=1" in receive(sock)
            assert process.wait(timeout=60) == 0, log.read_text()
            assert mounted_at(mountpoint) is None
        finally:
            unmount(mountpoint)
            if process.poll() is None:
                process.kill()
                process.wait()
    lines = log.read_text().splitlines()
    assert lines and all(re.match(r"<[67]>(INFO|DEBUG) assetfs\.[a-z.]+: ", line) for line in lines), \
        "to the journal: each line starts with its syslog priority, and nothing is an error"


def wait_for_line(log: Path, words: str) -> None:
    deadline = time.monotonic() + 30
    while words not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert words in log.read_text(), log.read_text()


def test_the_collector_units_command_line_collects(store_root, tmp_path):
    source = tmp_path / "old.txt"
    source.write_text("unreferenced\n")
    object_id = run_cli(store_root, "put", "tmp", str(source), "--no-name", "--expires-in", "1s").stdout.split()[0]
    time.sleep(1.1)  # let it expire: the one run below trashes it
    argv, environment = command("assetfs-gc.service", "ExecStart", store_root)
    result = subprocess.run(argv, env={**os.environ, **environment}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert object_id.decode() in run_cli(store_root, "trash", "ls").stdout.decode()


def test_the_http_units_command_line_serves_and_stops_cleanly(store_root, tmp_path):
    argv, environment = command("assetfs-serve.service", "ExecStart", store_root)
    port = free_port()
    argv = [part.replace("127.0.0.1:8080", f"127.0.0.1:{port}") for part in argv]
    process = subprocess.Popen(argv, env={**os.environ, **environment}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline, "assetfs serve did not start"
                time.sleep(0.05)
        assert response.status_code == 200, response.text
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
