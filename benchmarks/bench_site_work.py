"""The worker's CPU for each meter reading at a site at rest: 20 Halos on one account (the cloud
simulator), the real service in process on a real mosquitto, its time a manual clock
(`tests/test_site_work.py`'s rig: every car takes 16 A, 9 fit under MaxA 96 A, the others wait
paused with their minimum pause counting down).

Two figures, as CPU time of the thread that runs the service's handlers (this one):

  - a reading that changes nothing (the same reading again at the same instant): its decision and
    all that follows it;
  - a second of the site at rest: the worker's tick and the meter's three phases, the paused cars'
    countdowns moving, and the polls that fall due (their HTTP client's side too: the service is
    not started, so its calls are made on this thread).

Run from the repository root:

    python benchmarks/bench_site_work.py [--readings 600] [--seconds 120] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.broker import MosquittoBroker  # noqa: E402
from tests.test_site_work import HALOS, rested_site  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--readings", type=int, default=600, help="unchanged readings timed")
    ap.add_argument("--seconds", type=int, default=120, help="seconds of the site at rest timed")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    broker = MosquittoBroker().start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-site-work-") as tmp, \
                rested_site(broker, Path(tmp) / "state") as site:
            t = time.thread_time()
            for i in range(args.readings):
                site.read(i % 3)
            reading_ms = 1000 * (time.thread_time() - t) / args.readings
            t = time.thread_time()
            for _ in range(args.seconds):
                site.second()
            second_ms = 1000 * (time.thread_time() - t) / args.seconds
    finally:
        broker.close()
    result = {"halos": HALOS, "unchanged_reading_ms": round(reading_ms, 3), "second_at_rest_ms": round(second_ms, 2),
              "second_at_rest_percent_of_a_core": round(second_ms / 10, 3)}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{HALOS} Halos at rest: a reading that changes nothing {reading_ms:.3f} ms of CPU; "
              f"a second of the site (a tick, three readings, the polls due) {second_ms:.2f} ms "
              f"({second_ms / 10:.2f} % of a core)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
