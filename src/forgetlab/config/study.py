"""The forgetting study's configs: `forgetlab sequential` and `forgetlab compare` (tasks, strategy, landscape,
diagnostics)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from .core import DataConfig, EvalConfig, ExecutorConfig, Frozen, GeneralConfig, LoraSettings, ModelConfig, RunConfig, TrainConfig


class LandscapeConfig(Frozen):
    enabled: bool = Field(True, description="Hessian eigenvalues and the forgetting estimate at each checkpoint")
    top_k: int = Field(5, gt=0, description="how many top Hessian eigenvalues")
    iterations: int = Field(20, gt=1, description="Lanczos iterations (Hessian-vector products), at most")
    tol: float | None = Field(1e-3, gt=0, description="stop Lanczos once each top-k Ritz pair's residual is below this "
                              "× its eigenvalue (which bounds its error alike); null: always `iterations`")
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


def _schedule(v: Any) -> Any:
    return tuple(_share(x) for x in v) if isinstance(v, (list, tuple)) else v


def _shares_in_range(v: tuple[float, ...]) -> tuple[float, ...]:
    if any(not 0 <= x < 1 for x in v):
        raise ValueError("each schedule share must be in [0, 1): a batch needs some new examples")
    return v


Schedule = Annotated[tuple[float, ...], BeforeValidator(_schedule), AfterValidator(_shares_in_range)]
"""A share of old examples per task ('30/70' old/new, or a number), each in [0, 1): replay's and gated's."""


class ReplayConfig(Frozen):
    buffer: int = Field(64, gt=0, description="replay: examples kept from earlier tasks, shared evenly between them")
    ratio: float = Field(0.3, ge=0, lt=1, description="replay: share of old examples in each batch")
    schedule: Schedule = Field((), description="replay: share of old examples per task in order, e.g. "
                                        "[0/100, 30/70, 50/50] (old/new); the last entry repeats; empty: ratio")


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
    schedule: Schedule = Field((), description="gated: the earlier tasks' share per task in order, e.g. "
                                        "[0/100, 30/70, 50/50] (old/new), in place of the fixed mix; the last entry "
                                        "repeats; empty: mix")


class StrategyConfig(Frozen):
    name: str = Field("naive", description="continual-learning strategy (see `forgetlab methods`)")
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



class SequentialConfig(Frozen):
    renamed: ClassVar[dict[str, str]] = {"train.method": "strategy.name", "diagnostics.retention": "general.enabled",
                                         "diagnostics.max_new_tokens": "general.max_new_tokens"}

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
    general: GeneralConfig = GeneralConfig()
    run: RunConfig = RunConfig()
    stages: tuple[dict[str, float], ...] = Field((), description="a curriculum: each stage's task mix in training "
                                                 "order, e.g. [{facts:people: 1}, {facts:people: 0.7, facts:elements: "
                                                 "0.3}] (shares of the stage's examples; tasks may come back); empty: "
                                                 "one stage per task, in order. The references joint and base ignore "
                                                 "it")

    @field_validator("stages", mode="before")
    @classmethod
    def _percentages(cls, v: Any) -> Any:
        """Shares as fractions or percentages (70, '70%'); each stage's must add up to 1 (100%)."""
        if not isinstance(v, (list, tuple)):
            return v
        out = []
        for k, stage in enumerate(v, 1):
            if not isinstance(stage, dict) or not stage:
                raise ValueError(f"stage {k}: a mapping of task to share, e.g. {{facts:people: 0.7, facts:elements: 0.3}}")
            shares = {t: float(str(x).rstrip("%")) for t, x in stage.items()}
            total = sum(shares.values())
            if any(x <= 0 for x in shares.values()) or not (abs(total - 1) < 1e-6 or abs(total - 100) < 1e-4):
                raise ValueError(f"stage {k}: shares must be positive and add up to 1 (or 100%), not {total:g}")
            out.append({t: x / total for t, x in shares.items()})
        return tuple(out)

    @model_validator(mode="after")
    def _stage_tasks(self):
        for k, stage in enumerate(self.stages, 1):
            unknown = [t for t in stage if t not in self.tasks]
            if unknown:
                raise ValueError(f"stage {k} names {', '.join(unknown)}, not in tasks ({', '.join(self.tasks)})")
        return self

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

