"""Unlearning's configs: `forgetlab unlearn`, its RTT section, and `forgetlab sweep` (grids of unlearn + RTT).

Every setting is resolved once, when the config is built: `rtt: true` becomes a section, `--lr` and the sweep's
`lr` axis write train.lr, and a method's own defaults (METHOD_DEFAULTS, the learning rate by rank) fill the keys
the user left out, so the YAML a run writes is the config that ran and reading it back gives the same settings."""

from __future__ import annotations

import sys
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from .core import (
    ALL_PROJECTIONS,
    EvalConfig,
    ExecutorConfig,
    Frozen,
    GeneralConfig,
    LoraSettings,
    ModelConfig,
    Names,
    RunConfig,
    TrainConfig,
    copy_tree,
)
from .parse import field_names, key_hint, set_dotted

ALIASES = {"ria": "whp"}
"""Other names of unlearning methods."""

LEARNING_RATES = {"lora": 3e-4, "full": 3e-5}
"""train.lr when neither the user nor the method gives one: LoRA (lora.rank > 0) or full weights (rank 0)."""

WARMUP = {"lora": 0.0, "full": 0.1}
"""train.warmup_ratio where the user gives none: full weights' first steps at the whole rate cost retain facts that
the next steps give back (body → nature: retain 0.59 after step 1, 1.00 by step 4), and warmed up, science → objects
forgot more before general reached its floor (forget 0.28 against 0.56); LoRA's first steps barely move (B starts at
zero)."""

METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    # RMU steers hidden states: more and smaller steps than the loss-based methods (a sweep on the bundled model)
    "rmu": {"train.epochs": 6, "train.batch_size": 4, "lr": {"lora": 2e-3, "full": 5e-3}},
}
"""A method's own defaults (dotted keys), used for every key the user left unset; `lr` is by LoRA / full weights."""

ASCENT_CAP = None
"""gd / ga's cap on a forget answer's NLL, off by default: the guards already stop a run before it runs away, and a
cap of 6 nats made the built-in default run lose 3 of 24 retain facts in its first step (see the README)."""


class UnlearnMethodConfig(Frozen):
    name: str = Field("gd", description="unlearning method (see `forgetlab unlearn --list`)")
    rc: float = Field(1.0, ge=0, description="retain coefficient: weight of the retain loss (gd, whp, fwf, npo, simnpo)")
    ascent_cap: float | None = Field(ASCENT_CAP, gt=0, description="gd, ga: each forget answer's NLL (nats per token) "
                                     "counts up to this value and no further, so the ascent term is bounded below "
                                     "and a run without guards cannot run away (e.g. 6); None: plain gradient "
                                     "ascent, bounded by the guards' stop")
    chat_keys: float = Field(1.0, ge=0, description="weight of a term added to any method: unlikelihood of the tokens "
                             "that spell each forget answer where the model's own greedy chat answer says it (the chat "
                             "form keeps facts the plain form has lost; see unlearning/chat.py); 0: off")
    chat_retain: float = Field(0.0, ge=0, description="weight of a term added to any method: NLL of the model's own "
                               "greedy chat answers to the retain questions, generated before the first step (keeps "
                               "how the model answers in chat while the plain form of the facts is trained); 0: off")
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
    targets: Names = Field(ALL_PROJECTIONS, min_length=1, description="linear layers to adapt")

    def settings(self) -> LoraSettings:
        return LoraSettings(rank=self.rank, alpha=self.alpha or 2.0 * self.rank, dropout=self.dropout, targets=self.targets)


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


class GuardConfig(Frozen):
    """The guards of `forgetlab unlearn`: measure every few steps, stop at the target or at a floor, keep the best
    checkpoint. A checkpoint is *acceptable* when retain and general are at or above their floors and forgetting
    went far enough (forget at or below the target, or down by at least min_drop, and forget QA at or below
    qa_target); the kept one is the acceptable checkpoint with the lowest forget accuracy."""

    enabled: bool = Field(True, description="evaluate every eval_every steps, stop early, keep the best checkpoint; "
                          "false: train every epoch and keep the last")
    eval_every: int | None = Field(None, gt=0, description="steps between guard evaluations (forget / retain option "
                                   "log-likelihood and the general score); None: twice an epoch but at most every "
                                   "second step, and the last step")
    target: float | None = Field(None, ge=0, le=1, description="stop once forget accuracy is at or below this; None: "
                                 "chance (1 / choices) + margin, or the reference model's accuracy + margin")
    margin: float = Field(0.1, ge=0, le=1, description="how close to chance (or the reference) counts as forgotten")
    reference: str | None = Field(None, description="a model that never saw the forget facts (bundled, a hub id or a "
                                  "directory): its forget accuracy + margin is the target; --learn-first uses the "
                                  "model before it learned the task")
    min_drop: float = Field(0.3, ge=0, le=1, description="forget accuracy down by this much also counts as forgotten")
    qa_target: float | None = Field(0.2, ge=0, le=1, description="forgotten also needs forget QA (greedy chat answers "
                                    "that still hold the fact) at or below this, measured at the checks whose option "
                                    "accuracy says forgotten; None: the option accuracy alone")
    retain_floor: float = Field(0.9, ge=0, le=1, description="stop when retain accuracy falls below this share of "
                                "its start")
    general_floor: float = Field(0.8, ge=0, le=1, description="stop when the general score falls below this share "
                                 "of its start")
    retain_gain: float = Field(5.0, ge=0, description="hold the retain facts harder once some are lost: after each "
                               "check the retain term's weight is rc × (1 + retain_gain × lost / allowed), lost = start "
                               "− retain accuracy (0 if none lost), allowed = start − floor; 0: rc throughout")
    patience: int = Field(2, gt=0, description="stop only after this many checks in a row below a floor (a check "
                          "below one is never kept); 1: at the first")
    backtracks: int = Field(2, ge=0, description="a floor stop before any checkpoint was acceptable goes back to the "
                            "last check above the floors instead, up to this many times, and carries on from there "
                            "with fresh optimizer moments and the learning rate × backtrack_lr; 0: stop there")
    backtrack_lr: float = Field(0.5, gt=0, le=1, description="the learning rate's factor at each backtrack")


class LearnFirstConfig(Frozen):
    epochs: int = Field(8, gt=0, description="epochs of the fine-tuning that teaches the task before unlearning")
    lr: float = Field(2e-3, gt=0, description="its learning rate (LoRA r16 on all projections, merged afterwards)")
    batch_size: int = Field(8, gt=0, description="its batch size, apart from train.batch_size: the taught model is "
                            "the same whichever method then unlearns")
    forget_share: float = Field(0.5, gt=0, lt=1, description="share of the task's facts (by entity) to unlearn; the "
                                "rest is the retain set")
    kl: float = Field(1.0, ge=0, description="weight of the KL to the base model on the built-in anchor prompts while "
                      "learning (the `kl` strategy: keeps everyday answers); 0 = plain fine-tuning")


class UnlearnTrainConfig(TrainConfig):
    """`train.` for unlearning: a constant learning rate, short records, fewer epochs (defaults measured on the
    bundled model; see the README's unlearning table)."""

    epochs: int = Field(8, gt=0, description="passes over the forget facts at most (the guards stop a run sooner)")
    lr: float | None = Field(None, gt=0, description="learning rate; None: the method's own by rank (LoRA 3e-4, full "
                             "weights 3e-5; rmu 2e-3 / 5e-3), filled in when the config is built")
    warmup_ratio: float = Field(0.0, ge=0, le=1, description="share of the steps spent warming up linearly (where "
                                "unset: LoRA 0, full weights 0.1)")
    min_lr_ratio: float = Field(1.0, ge=0, le=1, description="cosine decays to lr * min_lr_ratio (1: constant lr)")
    max_length: int = Field(256, gt=8, description="records longer than this many tokens are truncated")


class UnlearnEvalConfig(EvalConfig):
    max_new_tokens: int = Field(16, gt=0, description="answer length of the greedy QA scoring")
    retain_shots: int = Field(0, ge=0, description="also score retain accuracy with this many other retain facts, "
                              "solved, before each question (the retain_kshot column at the start and the kept "
                              "step); 0: off")


class QuantAttackConfig(Frozen):
    enabled: bool = Field(False, description="after unlearning, round the weights to fewer bits and measure how much "
                          "of the forgotten accuracy comes back (Zhang et al., ICLR 2025); also: --attacks quant")
    bits: tuple[int, ...] = Field((8, 4), min_length=1, description="the precisions tried (round-to-nearest, "
                                  "asymmetric, per group)")
    group_size: int = Field(128, gt=0, description="weights per quantization group along each layer's input")

    @field_validator("bits")
    @classmethod
    def _bits(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(not 2 <= b <= 16 for b in v):
            raise ValueError("every quant.bits value must be 2..16")
        return v


class RelearnAttackConfig(Frozen):
    enabled: bool = Field(False, description="after unlearning, fine-tune on benign text that states none of the "
                          "forget answers and measure how much of the forget accuracy comes back (Hu et al., 2024); "
                          "also: --attacks relearn")
    file: str | None = Field(None, description="the benign text: JSON(L) records in any layout unlearn reads (MUSE's "
                             "{text}, QA, MCQ); texts that state a forget answer are left out; None: the retain facts")
    lrs: tuple[float, ...] = Field((1e-4, 3e-4), min_length=1, description="learning-rate grid (full weights, as RTT)")
    epochs: int = Field(3, gt=0, description="epochs per run; forget accuracy is recorded after each")
    batch_size: int = Field(4, gt=0, description="examples per step")


class UnlearnConfig(Frozen):
    method: UnlearnMethodConfig = UnlearnMethodConfig()
    lora: UnlearnLora = UnlearnLora()
    forget: str | None = Field(None, description="facts to forget: an MCQ, corpus, question/answer or file: JSON(L) "
                               "file; None: the built-in known facts (animals)")
    forget_eval: str | None = Field(None, description="MCQ / QA file to measure forgetting on; None: --forget when "
                                    "it can be scored")
    retain: str | None = Field(None, description="facts to keep (trained on by the retain terms); None: built-in (food)")
    retain_eval: str | None = Field(None, description="facts to measure retention on; None: --retain")
    freeze_layers: int = Field(0, ge=0, description="the first N decoder layers stay as they are: LoRA trains no "
                               "adapter there, full weights leave them frozen; 0: none")
    max_samples: int | None = Field(None, gt=0, description="unlearn only the first N forget facts (and measure "
                                    "forgetting on them where forget_eval is the same file); None: all (a sweep "
                                    "axis: forgetting vs forget-set size)")
    holdout: str | None = Field(None, description="facts of the forget set's kind that no model was trained on: the "
                                "non-members of the min-k% membership tests (AUC, privleak); None: none (with "
                                "learn_first: people the task never taught)")
    learn_first: str | None = Field(None, description="fine-tune on this task first (e.g. facts:people), then unlearn "
                                    "part of what was learned (the fine-tuned-knowledge case)")
    learn: LearnFirstConfig = LearnFirstConfig()
    rtt: RTTConfig = RTTConfig()
    quant: QuantAttackConfig = QuantAttackConfig()
    relearn: RelearnAttackConfig = RelearnAttackConfig()
    guard: GuardConfig = GuardConfig()
    save: Literal["merged", "adapter", "none"] = Field("merged", description="merged: a plain transformers model "
                                                       "directory (adapter merged in float32); adapter: the PEFT "
                                                       "adapter alone; none: nothing")
    model: ModelConfig = ModelConfig()
    train: UnlearnTrainConfig = UnlearnTrainConfig()
    eval: UnlearnEvalConfig = UnlearnEvalConfig()
    general: GeneralConfig = GeneralConfig()
    run: RunConfig = RunConfig()

    renamed: ClassVar[dict[str, str]] = {"retention": "general.enabled"}

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, data: Any) -> Any:
        return resolve_unlearn(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _inputs(self) -> UnlearnConfig:
        if self.learn_first and (self.forget or self.retain):
            raise ValueError("--learn-first makes its own forget and retain sets from the task; drop --forget/--retain")
        if self.learn_first and ":" not in self.learn_first:
            raise ValueError(f"learn_first '{self.learn_first}' needs the form source:name, e.g. facts:people")
        if self.save == "adapter" and self.lora.rank == 0:
            raise ValueError("save=adapter needs a LoRA run (lora.rank > 0); full-weight runs save the merged model")
        return self


def rtt_section(value: Any) -> Any:
    """`rtt: true` -> {"enabled": True}: the one place the short form becomes a section."""
    return {"enabled": value} if isinstance(value, bool) else value


def has_key(data: dict, key: str) -> bool:
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def resolve_unlearn(data: dict) -> dict:
    """An unlearn config's raw keys with everything decided: the short form of rtt expanded, the old `full_lr`
    moved to train.lr, and the method's own defaults, then the learning rate by rank, for every key left unset.
    Sections of the wrong type are left alone, for validation to name."""
    data = copy_tree(data)
    if "rtt" in data:
        data["rtt"] = rtt_section(data["rtt"])
    lora = data.get("lora") if isinstance(data.get("lora"), dict) else {}
    full = lora.get("rank", UnlearnLora.model_fields["rank"].default) == 0
    train = data.get("train", {})
    if not isinstance(train, dict):
        return data
    data["train"] = train = dict(train)
    if train.pop("method", None) is not None:  # files from before the strategy left train: (always 'naive' here)
        print("forgetlab: note: 'train.method' is not an unlearning setting (unlearning uses method.name); ignored",
              file=sys.stderr)
    if "full_lr" in data:  # before train.lr was the one rate; in those files train.lr was the LoRA rate only
        old = data.pop("full_lr")
        if full:
            train["lr"] = old
        print(f"forgetlab: note: 'full_lr' is now 'train.lr' (the rate at any rank); "
              f"{'used as train.lr' if full else 'ignored here (lora.rank > 0)'}", file=sys.stderr)
    method = data.get("method") if isinstance(data.get("method"), dict) else {}
    name = method.get("name", UnlearnMethodConfig.model_fields["name"].default)
    name = ALIASES.get(name, name) if isinstance(name, str) else None
    defaults = METHOD_DEFAULTS.get(name, {})
    for key, value in defaults.items():
        if key != "lr" and not has_key(data, key):
            set_dotted(data, key, value)
    train.setdefault("lr", defaults.get("lr", LEARNING_RATES)["full" if full else "lora"])
    train.setdefault("warmup_ratio", WARMUP["full" if full else "lora"])
    return data


# --------------------------------------------------------------------------------------------------------------- sweep

SWEEP_ALIASES = {"seed": "train.seed", "method": "method.name", "rank": "lora.rank", "rc": "method.rc", "lr": "train.lr"}
"""Short axis names."""


def _number(x: Any) -> Any:
    if isinstance(x, str):
        try:
            value = float(x)
        except ValueError:
            return x
        return int(value) if value.is_integer() and "e" not in x.lower() and "." not in x else value
    return x


def logspace(key: str, spec: Any) -> list[float]:
    """[start, stop, n] -> n values spaced evenly on a log scale from start to stop, each to 3 significant digits.
    (YAML reads 1e-6 without a dot as a string: such strings count as the numbers they spell.)"""
    if isinstance(spec, list):
        spec = [_number(x) for x in spec]
    ok = (isinstance(spec, list) and len(spec) == 3 and all(isinstance(x, (int, float)) for x in spec)
          and spec[0] > 0 and spec[1] > 0 and isinstance(spec[2], int) and spec[2] >= 2)
    if not ok:
        raise ValueError(f"axes: {key}: logspace takes [start, stop, count] with start, stop > 0 and count ≥ 2, "
                         f"e.g. {{logspace: [1e-6, 1e-4, 5]}}; got {spec!r}")
    a, b, n = spec
    return [float(f"{a * (b / a) ** (i / (n - 1)):.3g}") for i in range(n)]


class SweepConfig(Frozen):
    """`forgetlab sweep`: every combination of the axes' values is one point, an unlearn run followed by RTT."""

    unlearn: dict[str, Any] = Field(default_factory=dict, description="the unlearn config every point starts from "
                                    "(the keys of `forgetlab unlearn --config`); RTT is on and save is none unless "
                                    "set here")
    axes: dict[str, list[Any]] = Field(default_factory=dict, description="dotted unlearn keys -> values (also seed, "
                                       "method, rank, rc, lr), e.g. lora.rank: [1, 8, 0]; log-spaced: lr: {logspace: "
                                       "[1e-6, 1e-4, 5]} (5 values from 1e-6 to 1e-4, 3 significant digits)")
    executor: ExecutorConfig = ExecutorConfig()
    run: RunConfig = RunConfig()

    @field_validator("axes", mode="before")
    @classmethod
    def _spaced(cls, axes: Any) -> Any:
        if not isinstance(axes, dict):
            return axes
        return {k: logspace(k, v["logspace"]) if isinstance(v, dict) and set(v) == {"logspace"} else v
                for k, v in axes.items()}

    @model_validator(mode="after")
    def _check(self) -> SweepConfig:
        valid = set(field_names(UnlearnConfig)) | set(SWEEP_ALIASES)
        if not self.axes:
            raise ValueError("axes: nothing to sweep; give axes such as lora.rank: [1, 8, 0] (or --axis lora.rank=1,8,0)")
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
        data = copy_tree(self.unlearn)
        data["rtt"] = rtt_section(data.get("rtt", {}))
        if isinstance(data["rtt"], dict):
            data["rtt"].setdefault("enabled", True)
        data.setdefault("save", "none")
        for key, value in point.items():
            set_dotted(data, SWEEP_ALIASES.get(key, key), value)
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
