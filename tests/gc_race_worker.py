"""One process of the collector race test (tests/test_gc_race.py).

    gc_race_worker.py put STORE INDEX ROUNDS    puts, names, holds and deletes of a few contents
    gc_race_worker.py gc STORE STOP_FILE        collector passes until STOP_FILE exists

A put worker checks, after each named put, that the object reads back with the right hash:
a named object is referenced, so no collector may take its content away, whatever runs at
the same time. Any failure ends the process with a traceback and exit code 1.
"""

import io
import json
import random
import sys
import time
from pathlib import Path

import blake3

from casgc import run_once
from cas import names
from cas.errors import NotFound
from cas.store import Store

NAMED_CONTENTS = [f"content {n} ".encode() * (500 * (n + 1)) for n in range(3)]
# Contents no name ever refers to: their blobs keep becoming unused and swept while other
# puts of the same content deduplicate onto them, which is the race invariant 2 is about.
UNNAMED_CONTENTS = [f"unnamed {n} ".encode() * (700 * (n + 1)) for n in range(2)]
SHARED = "shared"


def check_content(store: Store, object_id: str, expected: bytes) -> None:
    with store.open_object(object_id) as stream:
        data = stream.read()
    assert blake3.blake3(data).hexdigest() == blake3.blake3(expected).hexdigest(), f"{object_id}: wrong content"


def unlink_name(store: Store, name: str) -> None:
    store.catalog.run(lambda tx: names.unlink(tx, names.bucket_root(tx, SHARED), name, time.time()))


def put_worker(store: Store, index: int, rounds: int) -> dict[str, int]:
    chance = random.Random(index)
    done = {"named": 0, "unnamed": 0, "never_named": 0, "deleted": 0, "held": 0}
    named: list[tuple[str, str, bytes]] = []  # (name, object id, content) still named by this worker
    for round_number in range(rounds):
        action = chance.randrange(4)
        content = chance.choice(NAMED_CONTENTS if action == 0 else NAMED_CONTENTS + UNNAMED_CONTENTS)
        done["never_named"] += action in (1, 2) and content in UNNAMED_CONTENTS
        if action == 0:
            name = f"w{index}-{round_number}"
            info = store.put(SHARED, io.BytesIO(content), name=name).object
            check_content(store, info.id, content)
            named.append((name, info.id, content))
            done["named"] += 1
        elif action == 1:
            store.put(SHARED, io.BytesIO(content))  # unreferenced: the collector's to take
            done["unnamed"] += 1
        elif action == 2:
            info = store.put(f"own{index}", io.BytesIO(content)).object
            try:
                store.delete(info.id)
                done["deleted"] += 1
            except NotFound:
                pass  # the collector trashed it first
        elif named:
            name, object_id, expected = named[chance.randrange(len(named))]
            store.hold(object_id, f"worker-{index}")
            check_content(store, object_id, expected)
            store.release(object_id, f"worker-{index}")
            done["held"] += 1
        if named and chance.random() < 0.3:
            name, object_id, expected = named.pop(chance.randrange(len(named)))
            check_content(store, object_id, expected)
            unlink_name(store, name)
    for name, object_id, expected in named:
        check_content(store, object_id, expected)
    return done


def gc_worker(store: Store, stop_file: Path) -> dict[str, int]:
    """Collector passes until one that started after STOP_FILE appeared (after the last put)."""
    runs, trashed, swept = 0, 0, 0
    last_run = False
    while not last_run:
        last_run = stop_file.exists()
        report = run_once(store)
        assert report.errors == 0, report.lines()
        runs += 1
        trashed += report.get("touched").counts["trashed"]
        swept += report.get("sweep").counts["swept"]
    return {"runs": runs, "trashed": trashed, "swept": swept}


def main() -> None:
    role, root = sys.argv[1], sys.argv[2]
    with Store.open(root) as store:
        if role == "put":
            result = put_worker(store, int(sys.argv[3]), int(sys.argv[4]))
        else:
            result = gc_worker(store, Path(sys.argv[3]))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
