"""Run a real `assetfs serve` process for a test, on a free port, and always stop it.

The server is the installed `assetfs` command in its own process; tests talk to it over a
real socket (httpx, curl, nginx). `stop_server` sends SIGTERM to the pid it started (and
SIGKILL only if it does not stop in time) and returns its exit code.
"""

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from conftest import ASSETFS

START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def start_server(store_root: Path, log: Path, *args: str) -> Server:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_file = open(log, "wb")
    process = subprocess.Popen([ASSETFS, "--store", str(store_root), "serve", "--listen", f"127.0.0.1:{port}", *args],
                               stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log_file.close()
    server = Server(process, url, log)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise AssertionError(f"assetfs serve exited {process.returncode} at start:\n{server.log_text()}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            stop_server(server)
            raise AssertionError(f"assetfs serve did not answer within {START_TIMEOUT} s:\n{server.log_text()}")
        time.sleep(0.05)


def stop_server(server: Server) -> int:
    """SIGTERM the server's pid; SIGKILL it if it has not exited in time. Its exit code."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.kill(server.process.pid, signal.SIGKILL)
            server.process.wait(STOP_TIMEOUT)
    return server.process.returncode


def add_config(store_root: Path, text: str) -> None:
    """Append tables to the store's assetfs.toml (before the server starts)."""
    with open(store_root / "assetfs.toml", "a") as config:
        config.write("\n" + text + "\n")


def error_code(response: httpx.Response) -> str:
    """The stable code of a JSON error answer (and check it is one)."""
    assert response.headers["content-type"] == "application/json", response.text
    return response.json()["error"]["code"]
