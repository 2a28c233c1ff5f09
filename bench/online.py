"""Online learning on the bundled model: the issue's targets, measured in one run.

1. `online-eval` on the built-in set (16 invented facts, each stated twice, chit-chat between), default settings:
   paraphrase recall (generalisation) ≥ 0.78, locality ≥ 0.95, median fact update ≤ 5 s. Locality is reported two
   ways: token agreement with the starting model's answers (the knowledge-editing measure) and whole answers
   unchanged (stricter: a reworded ending counts as a change).
2. The learner as an editor (`online-eval --edits`): the 34 zsRE records of ../shared/data/zsre when that checkout
   is there, else the shipped invented ones — reliability, generalisation, locality after all of them (EasyEdit's
   definitions) and the median edit, target ≤ 3 s, with the `editor` preset that `online-eval --edits` runs.
3. Answer latency with learning on against learning off, on a scripted conversation (statements and questions, the
   same turns both ways, the same model): ≤ 1.25×. "Paused" waits for the learner between turns (a person reading
   the answer and typing the next turn gives it that time); "back to back" sends the next turn at once, so an answer
   can wait for the update in progress (reported, no target).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from common import timed  # noqa: F401  (sets HF_HUB_OFFLINE)
from forgetlab.config import PRESETS, OnlineConfig
from forgetlab.model import load_base
from forgetlab.online.edits import read_edits
from forgetlab.online.learner import OnlineLearner
from forgetlab.online.probes import BUILTIN_FACTS
from forgetlab.recipes.online_edits import online_edits
from forgetlab.recipes.online_eval import online_eval
from forgetlab.sessions.holder import Loaded, ModelHolder

ROOT = Path(__file__).resolve().parents[1]
EDITS = next(p for p in (ROOT.parent / "shared" / "data" / "zsre" / "zsre_dev.json",
                         ROOT / "examples" / "edits" / "invented_zsre.json") if p.is_file())
CONVERSATION = [f.statement for f in BUILTIN_FACTS[:4]] + [f.probes[0].question for f in BUILTIN_FACTS[:4]]


def latencies(holder: ModelHolder, learner: OnlineLearner | None, paused: bool) -> list[float]:
    out = []
    for text in CONVERSATION:
        if learner is not None and paused:
            learner.wait()
        t0 = time.perf_counter()
        done = holder.complete([{"role": "user", "content": text}], max_tokens=24)
        out.append(time.perf_counter() - t0)
        if learner is not None:
            learner.submit(text, done.text)
    if learner is not None:
        learner.wait()
    return out


def main() -> dict:
    cfg = OnlineConfig()
    with tempfile.TemporaryDirectory() as root:
        summary = online_eval(cfg, list(BUILTIN_FACTS), 2, None, root, console=None)
        editor = OnlineConfig.model_validate(PRESETS["editor"])  # what `online-eval --edits` runs
        edits = online_edits(editor, read_edits(EDITS), root, console=None)["forgetlab"]
        holder = ModelHolder(lambda: Loaded(*load_base(cfg.model), "base", None, time.time()))
        holder.complete([{"role": "user", "content": "warm up"}], max_tokens=4)
        off = latencies(holder, None, paused=True)
        learner = OnlineLearner(holder, cfg, f"{root}/latency")
        on = latencies(holder, learner, paused=True)
        learner.reset()
        rushed = latencies(holder, learner, paused=False)
    med = statistics.median
    return {"recall": summary["generalisation"], "reliability": summary["reliability"],
            "locality": summary["locality"], "locality_exact": summary["locality_exact"],
            "median_update_s": summary["median_update_s"],
            "latency_off_s": med(off), "latency_on_s": med(on), "latency_ratio": med(on) / med(off),
            "latency_back_to_back_s": med(rushed), "back_to_back_ratio": med(rushed) / med(off),
            "edits": {"file": EDITS.name, **{k: edits[k] for k in ("reliability", "generalisation", "locality",
                                                                     "later_wins", "median_edit_s")}},
            "targets": {"recall": 0.78, "locality": 0.95, "median_update_s": 5.0, "latency_ratio": 1.25,
                        "edits": {"reliability": 0.95, "generalisation": 0.8, "locality": 0.95, "median_edit_s": 3.0}}}


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
