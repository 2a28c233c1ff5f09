"""`make bench`: every benchmark in one run, ratios printed against baselines measured in the same run."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import assistants  # noqa: E402
import below  # noqa: E402
import grid_overhead  # noqa: E402
import lanczos  # noqa: E402
import load  # noqa: E402
import mcq_eval  # noqa: E402
import online  # noqa: E402
import serving  # noqa: E402
import train_throughput  # noqa: E402
import unlearn_cost  # noqa: E402

if __name__ == "__main__":
    results = {}
    for name, run in (("mcq_eval", mcq_eval.main), ("train_throughput", train_throughput.main),
                      ("lanczos", lanczos.main), ("serving", serving.main), ("online", online.main),
                      ("below", below.main), ("grid_overhead", grid_overhead.main), ("load", load.main),
                      ("load_300s", load.memory_run), ("assistants", assistants.main),
                      ("unlearn_cost", unlearn_cost.main)):
        t0 = time.perf_counter()
        results[name] = run()
        results[name]["seconds"] = round(time.perf_counter() - t0, 1)
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(json.dumps(results, indent=2, default=str))
