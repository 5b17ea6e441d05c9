"""Issue 9, point 8: what every `assetfs` command pays before it does anything. Importing
the CLI and the store runs no subprocess (`ctypes.util.find_library` runs `ldconfig -p`) and
does not load libmagic, which a put loads beside its copy (cas/content_type.py)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import ctypes.util, subprocess, sys

def refuse(*args, **kwargs):
    raise SystemExit(f"a subprocess or library search at import: {args!r}")

ctypes.util.find_library = refuse
subprocess.Popen.__init__ = refuse
import cas.cli, cas.store, cas.blobtree, cas.content_type
assert "magic" not in sys.modules, "libmagic was loaded by an import"
print("ok")
"""


def test_importing_the_cli_spawns_nothing_and_loads_no_libmagic() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr


def test_content_type_loaded_in_the_background_detects_as_at_first_use() -> None:
    """Loading libmagic ahead in a thread, then detecting from several threads at once,
    gives what detection gives when it loads libmagic itself."""
    probe = """
import threading
from cas import content_type
from helpers import SMALL_PDF
content_type.load_in_background()
results = []
def detect():
    results.append((content_type.detect_content_type(SMALL_PDF, "a.bin"),
                    content_type.detect_content_type(b"body { color: red }", "site.css")))
threads = [threading.Thread(target=detect) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
assert results == [("application/pdf", "text/css")] * 8, results
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                          cwd=__file__.rsplit("/", 1)[0])
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr
