"""The serve suite: GET of a 4 KiB object over HTTP, `assetfs serve` beside nginx, in one run.

wrk (`-c64 -t2 --latency`, `--serve-duration` seconds a run) against, in turns:
- nginx static: nginx serving the blob file as a plain static file (the baseline);
- assetfs direct: `assetfs serve` alone, `/assets/by-id/<id>` of a public bucket;
- assetfs accel: nginx in front of `assetfs serve` with `accel_redirect` (docs/http.md);
- nginx /blobs/: the content-addressed URL, nginx alone from the blob tree (docs/http.md).
Each server has one worker process (`--serve-workers` for assetfs), so the ratios compare
the software, not the number of cores it takes. Reported: requests/s and p99 latency,
medians of `--repeat` runs, and ratios to nginx static.

Goals (issue 10): direct ≥ 0.25×, accel ≥ 0.3×, /blobs/ ≥ 0.9× nginx static's requests/s.

Then, with a `--serve-size` object (default 1 GiB), timed with common.measure (medians):
- GET with curl: nginx static, assetfs direct, assetfs accel. Goals ≥ 0.5× and ≥ 0.95× nginx.
- Upload with `curl -T` to `POST /v1/buckets/…/objects` vs `assetfs put` of the same size,
  alternating under the same disk conditions (serve_upload.py). Goal ≥ 0.8× put.

Last, `--serve-uploads` uploads of `--serve-upload-size` at once (default 200 of 10 MB) with
the server's peak RSS (serve_uploads.py).

`--serve-part` runs only some of these parts (small, large-get, upload, concurrent).
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import common
import serve_upload
import serve_uploads

OBJECT_SIZE = 4096
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
PARTS = ("small", "large-get", "upload", "concurrent")
DOCS = common.ROOT / "docs" / "http.md"


def add_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--serve-duration", type=int, default=10, metavar="S", help="seconds of each wrk run (default: 10)")
    group.add_argument("--serve-workers", type=int, default=1, metavar="N", help="assetfs serve workers (default: 1)")
    group.add_argument("--serve-size", type=common.parse_size, default=1 << 30, metavar="SIZE",
                       help="size of the object downloaded and uploaded, e.g. 64M (default: 1G)")
    group.add_argument("--serve-uploads", type=int, default=200, metavar="N",
                       help="concurrent uploads whose server memory is measured (default: 200)")
    group.add_argument("--serve-upload-size", type=common.parse_size, default=10_000_000, metavar="SIZE",
                       help="size of each concurrent upload (default: 10 MB)")
    group.add_argument("--serve-part", action="append", choices=PARTS,
                       help="run only this part; repeatable (default: all: 4 KiB GETs, large GETs, the upload "
                            "against put, the concurrent uploads)")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_http(url: str, what: str) -> None:
    deadline = time.monotonic() + 20
    while subprocess.run(["curl", "-s", "-o", "/dev/null", "--max-time", "1", url]).returncode != 0:
        if time.monotonic() > deadline:
            logs = "".join(path.read_text(errors="replace")[-2000:] for path in common.WORK_DIR.glob("serve-*.log"))
            raise common.BenchError(f"{what} did not answer at {url}; the servers' logs:\n{logs}")
        time.sleep(0.1)


def _nginx_config(folder: Path, blobs: Path, upstream: str, port: int) -> Path:
    """nginx with the server block of docs/http.md (accel and /blobs/), plus /static/ (plain)."""
    block = re.search(r"```nginx\n(.*?)```", DOCS.read_text(), re.S)
    if block is None:
        raise common.BenchError("docs/http.md has no ```nginx block")
    text = block.group(1).replace("/srv/assetfs/blobs/", f"{blobs}/").replace("127.0.0.1:8080", upstream)
    text = text.replace("listen 80;", f"listen 127.0.0.1:{port};\n    location /static/ {{ alias {blobs}/; }}")
    temp = "\n".join(f"    {kind}_temp_path {folder}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    config = folder / "nginx.conf"
    config.write_text(f"daemon on;\nuser root;\nworker_processes 1;\npid {folder}/nginx.pid;\n"
                      f"error_log {folder}/error.log;\nevents {{ worker_connections 1024; }}\n"
                      f"http {{\n    include /etc/nginx/mime.types;\n    access_log off;\n{temp}\n{text}\n}}\n")
    return config


def _assetfs(*args: str) -> str:
    return subprocess.run([common.ASSETFS, *args], check=True, capture_output=True, text=True).stdout


def _large_get(args: argparse.Namespace, work: Path, nginx: str, ports: dict[str, int]) -> dict[str, Any]:
    """The GET group, with a `--serve-size` object."""
    size = args.serve_size
    big = work / "big.bin"
    with open(big, "wb") as out:
        for offset in range(0, size, 1 << 24):
            out.write(os.urandom(min(1 << 24, size - offset)))
    placed = {name: json.loads(_assetfs("--store", str(work / name), "put", "bench", str(big), "--json"))
              for name in ("direct", "accel")}
    digest = placed["accel"]["hash"]
    urls = {"nginx static": f"{nginx}/static/{digest[:2]}/{digest[2:4]}/{digest}",
            "assetfs direct": f"http://127.0.0.1:{ports['direct']}/assets/by-id/{placed['direct']['id']}",
            "assetfs accel": f"{nginx}/assets/by-id/{placed['accel']['id']}"}
    big.unlink()
    get = common.Group(
        f"GET of a {common.format_size(size)} object with curl (-o /dev/null)", size,
        [common.Contender(label, [["curl", "-sS", "-f", "-o", "/dev/null", url]]) for label, url in urls.items()],
        ["nginx static"])
    common.measure(get, args.repeat, [path for path in (work / "accel" / "blobs").rglob("*") if path.is_file()],
                   args.cold)
    return common.group_record(get, [
        common.goal("assetfs direct >= 0.5x nginx static", get.ratio("assetfs direct", "nginx static"), 0.5, "x"),
        common.goal("assetfs accel >= 0.95x nginx static", get.ratio("assetfs accel", "nginx static"), 0.95, "x")])


def _store(root: Path, accel: bool) -> tuple[str, str]:
    """A store with one public 4 KiB object; its id and hash."""
    _assetfs("--store", str(root), "init")
    with open(root / "assetfs.toml", "a") as config:
        config.write("\n[buckets.bench]\npublic = true\n" + ('[serve]\naccel_redirect = "/internal/blobs/"\n' if accel else ""))
    source = root.parent / f"object-{accel}.bin"
    source.write_bytes(b"\x00\x01assetfs" * (OBJECT_SIZE // 9) + b"x" * (OBJECT_SIZE % 9))
    line = _assetfs("--store", str(root), "put", "bench", str(source), "--json")
    record = json.loads(line)
    return record["id"], record["hash"]


def _wrk(url: str, duration: int) -> tuple[float, float]:
    """(requests/s, p99 ms) of one wrk run; every response must be a 2xx."""
    done = subprocess.run(["wrk", "-c64", "-t2", f"-d{duration}s", "--latency", url], capture_output=True, text=True,
                          timeout=duration + 60)
    if done.returncode != 0 or "Non-2xx" in done.stdout or "Socket errors" in done.stdout:
        raise common.BenchError(f"wrk {url} failed or got errors:\n{done.stdout}{done.stderr}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", done.stdout).group(1))
    value, unit = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", done.stdout, re.M).groups()
    return rate, float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _small_get(urls: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    """wrk against each URL of the 4 KiB object, in turns; the group's record."""
    for url in urls.values():
        _wrk(url, 1)  # warm-up
    results: dict[str, list[tuple[float, float]]] = {label: [] for label in urls}
    labels = list(urls)
    for round_number in range(args.repeat):
        shift = round_number % len(labels)
        for label in labels[shift:] + labels[:shift]:
            results[label].append(_wrk(urls[label], args.serve_duration))
            print(f"  {label}: {results[label][-1][0]:.0f} req/s, p99 {results[label][-1][1]:.2f} ms", file=sys.stderr)
    load = os.getloadavg()
    rate = {label: statistics.median(r for r, _ in runs) for label, runs in results.items()}
    p99 = {label: statistics.median(p for _, p in runs) for label, runs in results.items()}
    base = rate["nginx static"]
    header = ["contender", "requests/s", "p99 ms", "x nginx static"]
    rows = [[label, f"{rate[label]:.0f}", f"{p99[label]:.2f}", f"{rate[label] / base:.2f}"] for label in urls]
    goals = [
        common.goal("assetfs direct >= 0.25x nginx static", rate["assetfs direct"] / base, 0.25, "x"),
        common.goal("assetfs accel >= 0.3x nginx static", rate["assetfs accel (nginx in front)"] / base, 0.3, "x"),
        common.goal("nginx /blobs/ >= 0.9x nginx static", rate["nginx /blobs/<hash>.bin"] / base, 0.9, "x"),
    ]
    return {"title": f"GET of a {OBJECT_SIZE}-byte object, wrk -c64 (medians of {args.repeat})",
            "table": {"header": header, "rows": rows}, "goals": goals,
            "notes": ["every server one worker process; wrk runs on the same 2-CPU machine",
                      f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} after the wrk runs"]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    if shutil.which("wrk") is None or not Path(NGINX).exists():
        raise common.BenchError("wrk and nginx are needed: scripts/bench installs them (Debian wrk, nginx-light)")
    work = common.WORK_DIR
    direct_id, _ = _store(work / "direct", accel=False)
    accel_id, accel_hash = _store(work / "accel", accel=True)
    servers: list[subprocess.Popen] = []
    folder = work / "nginx"
    folder.mkdir()
    try:
        ports = {}
        for name in ("direct", "accel"):
            ports[name] = _free_port()
            with open(work / f"serve-{name}.log", "wb") as log:
                servers.append(subprocess.Popen(
                    [common.ASSETFS, "--store", str(work / name), "serve", "--listen", f"127.0.0.1:{ports[name]}",
                     "--workers", str(args.serve_workers)], stdout=subprocess.DEVNULL, stderr=log))
        nginx_port = _free_port()
        config = _nginx_config(folder, work / "accel" / "blobs", f"127.0.0.1:{ports['accel']}", nginx_port)
        subprocess.run([NGINX, "-c", str(config), "-e", str(folder / "error.log")], check=True)
        nginx = f"http://127.0.0.1:{nginx_port}"
        relative = f"{accel_hash[:2]}/{accel_hash[2:4]}/{accel_hash}"
        urls = {
            "nginx static": f"{nginx}/static/{relative}",
            "assetfs direct": f"http://127.0.0.1:{ports['direct']}/assets/by-id/{direct_id}",
            "assetfs accel (nginx in front)": f"{nginx}/assets/by-id/{accel_id}",
            "nginx /blobs/<hash>.bin": f"{nginx}/blobs/{accel_hash}.bin",
        }
        for label, url in urls.items():
            _wait_http(url, label)
        parts = args.serve_part or PARTS
        groups = []
        if "small" in parts:
            groups.append(_small_get(urls, args))
        if "large-get" in parts:
            groups.append(_large_get(args, work, nginx, ports))
        if "upload" in parts:
            groups.append(serve_upload.measure(args, work, work / "direct", f"http://127.0.0.1:{ports['direct']}"))
        if "concurrent" in parts:
            token = _assetfs("--store", str(work / "direct"), "token", "create", "--bucket", "bench", "--write").strip()
            groups.append(serve_uploads.measure(f"http://127.0.0.1:{ports['direct']}/v1/buckets/bench/objects", token,
                                                servers[0].pid, args.serve_uploads, args.serve_upload_size))
    finally:
        pid_file = folder / "nginx.pid"
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        for server in servers:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
    return {"parameters": {"object_bytes": OBJECT_SIZE, "connections": 64, "wrk_threads": 2,
                           "seconds_per_run": args.serve_duration, "repeat": args.repeat,
                           "assetfs_workers": args.serve_workers, "nginx_workers": 1, "large_bytes": args.serve_size,
                           "uploads": args.serve_uploads, "upload_bytes": args.serve_upload_size},
            "parts": list(parts), "groups": groups}
