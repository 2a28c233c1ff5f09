"""General ability through lm-evaluation-harness (the `lm-eval` extra): the in-memory model — adapters applied, no
second copy, no download — scored on lm-eval tasks by name or by local task YAML files (offline: a local task reads a
local data file, e.g. `dataset_path: json` with `dataset_kwargs: {data_files: ...}`). `general.lm_eval` makes this
the general score in every workflow (evaluate.general_score); the built-in 28 questions stay the default.
"""

from __future__ import annotations

from .errors import UserError

METRICS = ("acc", "exact_match", "acc_norm", "f1", "mc2")
"""The metric a task reports, in order of preference: the first one its results hold."""


def task_names(tasks: list[str]) -> tuple[list[str], list[str]]:
    """config.lm_eval_tasks, its complaint as a UserError."""
    from .config.core import lm_eval_tasks

    try:
        return lm_eval_tasks(tasks)
    except ValueError as e:
        raise UserError(f"general.lm_eval: {e}") from None


def lm_eval_scores(model, tok, tasks: list[str], limit: int | None = None, batch_size: int = 16) -> dict[str, float]:
    """{task: score} from lm-evaluation-harness on `model` as it is in memory (the first of METRICS each task
    reports)."""
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise UserError("general.lm_eval needs lm-evaluation-harness: pip install -e '.[lm-eval]'") from None
    from .losses import unwrap
    from .model import quiet_transformers

    quiet_transformers()
    names, paths = task_names(tasks)
    import logging

    logging.getLogger("lm-eval").setLevel(logging.ERROR)
    manager = TaskManager(include_path=paths or None)
    unknown = [n for n in names if n not in manager.all_tasks]
    if unknown:
        raise UserError(f"general.lm_eval: unknown task {', '.join(unknown)}; give lm-eval task names or local "
                        "task YAML files (offline, a named task needs its data in the local cache)")
    lm_model = unwrap(model)
    was = lm_model.training
    lm = HFLM(pretrained=lm_model, tokenizer=tok, batch_size=batch_size,
              device=str(next(lm_model.parameters()).device))
    import random

    import numpy as np
    import torch

    # lm-eval seeds Python, NumPy and torch by default and draws from them; mid-training that would replay or shift
    # the run's dropout and data order after every check: the generators are put back as they were
    states = (random.getstate(), np.random.get_state(), torch.get_rng_state(),
              torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
    try:
        out = lm_eval.simple_evaluate(model=lm, tasks=names, task_manager=manager, limit=limit, log_samples=False,
                                      verbosity="ERROR", bootstrap_iters=0, random_seed=None, numpy_random_seed=None,
                                      torch_random_seed=None)
    finally:
        lm_model.train(was)
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if states[3] is not None:
            torch.cuda.set_rng_state_all(states[3])
    scores = {}
    for name in names:
        result = out["results"].get(name, {})
        key = next((f"{m},none" for m in METRICS if f"{m},none" in result), None)
        if key is None:
            raise UserError(f"general.lm_eval: task {name} reported none of {', '.join(METRICS)}")
        scores[name] = float(result[key])
    return scores
