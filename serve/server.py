"""`assetfs serve`: uvicorn (uvloop + httptools) running the application (docs/http.md).

Starts in a fraction of a second, stops cleanly on SIGTERM or SIGINT (requests in flight
get `GRACEFUL_STOP` seconds to finish), and drops connections that stay idle or send their
request's head too slowly (serve/protocol.py).
"""

import logging
import os
import signal
import sys
from pathlib import Path

from cas.errors import BadInput
from cas.store import Store
from serve import signing
from serve.app import STORE_ENV

GRACEFUL_STOP = 10  # seconds
KEEP_ALIVE = 5  # seconds an idle keep-alive connection stays open


def _stopped(signum: int, frame: object) -> None:
    raise SystemExit(0)


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadInput(f"--listen {listen!r}: expected HOST:PORT, such as 127.0.0.1:8080")
    return host.strip("[]"), int(port)


def run(store_root: Path, listen: str | None, workers: int | None) -> None:
    import uvicorn

    with Store.open(store_root) as store:  # checks the store and its schema version once, up front
        config = store.config.serve
        signing.load_secret(store.root)  # created here, before the workers race to make it
    host, port = parse_listen(listen or config.listen)
    count = config.workers if workers is None else workers
    if count < 1:
        raise BadInput("--workers must be at least 1")
    os.environ[STORE_ENV] = str(Path(store_root).absolute())
    # uvicorn stops gracefully on SIGTERM, then raises it again under the handler it found:
    # this one turns that into exit status 0 (a stop asked for is a clean stop).
    signal.signal(signal.SIGTERM, _stopped)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    uvicorn.run("serve.app:create_app", factory=True, host=host, port=port, workers=count if count > 1 else None,
                loop="uvloop", http="serve.protocol:ServeProtocol", lifespan="on", access_log=False, proxy_headers=False,
                server_header=False, timeout_keep_alive=KEEP_ALIVE, timeout_graceful_shutdown=GRACEFUL_STOP,
                log_level="info")
