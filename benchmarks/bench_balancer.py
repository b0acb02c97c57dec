"""Score the balancer strategies on the built-in scenarios (same as `chargeamps-bridge bench`).

    python benchmarks/bench_balancer.py [--json] [--scenario NAME] [--trace FILE] [--plot FILE.png]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge.sim.bench import bench_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(bench_main(sys.argv[1:]))
