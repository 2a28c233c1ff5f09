"""Logging a run to the tools researchers watch runs in: TensorBoard, Weights & Biases, MLflow (`run.log`, `--log`).

Each through the library's own writer, into the run directory (`tb/`, `wandb/`, `mlflow.db`), so nothing needs a
server or a network: wandb runs offline (`wandb sync` uploads later), MLflow writes a SQLite store (its file store is
frozen upstream; `mlflow ui --backend-store-uri sqlite:///runs/<run>/mlflow.db`). What is logged: every training
step of the one loop (loss, lr, grad norm, tokens/s), each evaluation (per task and split, the general score, the
unlearning checks) and, at the end, the summary numbers and the final tables as text. `NullTracker` stands in where
`run.log` is unset.
"""

from __future__ import annotations

import time
from pathlib import Path

from .errors import UserError

STEP_KEYS = ("loss", "lr", "grad_norm", "tokens_per_s")
"""The loop history's columns logged at every step (under `train/`)."""

EXTRAS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


class NullTracker:
    """Logs nothing (no `run.log`)."""

    def step(self, row: dict, step: int) -> None:
        pass

    def scalars(self, values: dict, step: int, prefix: str = "") -> None:
        pass

    def text(self, name: str, body: str) -> None:
        pass

    def close(self) -> None:
        pass


class Tracker(NullTracker):
    """One run's writer for `kind` (tensorboard, wandb or mlflow), under `run_dir`."""

    def __init__(self, kind: str, run_dir: Path, name: str, config: dict):
        self.kind = kind
        try:
            if kind == "tensorboard":
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(log_dir=str(run_dir / "tb"))
            elif kind == "wandb":
                import wandb

                self.writer = wandb.init(project="forgetlab", name=name, dir=str(run_dir), mode="offline",
                                         config=config, reinit="create_new")
            else:
                import mlflow
                from mlflow.entities import Param

                self.client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{(run_dir / 'mlflow.db').resolve()}")
                found = self.client.get_experiment_by_name("forgetlab")  # (a resumed run has it already)
                experiment = found.experiment_id if found else self.client.create_experiment(
                    "forgetlab", artifact_location=(run_dir / "mlartifacts").resolve().as_uri())
                self.run_id = self.client.create_run(experiment, run_name=name).info.run_id
                params = [Param(k[:250], str(v)[:500]) for k, v in flat(config).items()]
                for i in range(0, len(params), 100):  # MLflow takes at most 100 parameters a call
                    self.client.log_batch(self.run_id, params=params[i:i + 100])
        except ImportError:
            require(kind)
            raise

    def scalars(self, values: dict, step: int, prefix: str = "") -> None:
        values = {f"{prefix}{k}": float(v) for k, v in values.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v}
        if not values:
            return
        if self.kind == "tensorboard":
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)
        elif self.kind == "wandb":  # its own step only grows: the run's step goes in as a column of its own
            self.writer.log({**values, f"{prefix}step": step})
        else:  # one write for the step's values
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            self.client.log_batch(self.run_id, metrics=[Metric(k.replace(" ", "_"), v, now, step)
                                                        for k, v in values.items()])

    def step(self, row: dict, step: int) -> None:
        self.scalars({k: row.get(k) for k in STEP_KEYS}, step, "train/")

    def text(self, name: str, body: str) -> None:
        if self.kind == "tensorboard":
            self.writer.add_text(name, body.replace("\n", "  \n"))
        elif self.kind == "wandb":
            self.writer.summary[name] = body
        else:
            self.client.log_text(self.run_id, body, f"{name}.md")

    def close(self) -> None:
        if self.kind == "tensorboard":
            self.writer.close()
        elif self.kind == "wandb":
            self.writer.finish()
        else:
            self.client.set_terminated(self.run_id)


def require(kind: str | None) -> None:
    """Fail in one line, before a run starts, where `kind`'s package is not installed."""
    import importlib.util

    if kind and importlib.util.find_spec(kind) is None:  # each package is named as its kind
        raise UserError(f"--log {kind}: the {kind} package is not installed; pip install -e \".[{EXTRAS[kind]}]\" "
                        "(or drop --log)")


def tracker(kind: str | None, run_dir: Path, name: str, config: dict) -> NullTracker:
    """The run's tracker: a writer for `kind`, or one that logs nothing."""
    return Tracker(kind, run_dir, name, config) if kind else NullTracker()


def flat(d: dict, prefix: str = "") -> dict:
    """{'train': {'lr': 1e-3}} -> {'train.lr': 1e-3}."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
