"""The continual assistant's configs: `forgetlab session train` and `forgetlab session compare`."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationError, model_validator

from .core import ALL_PROJECTIONS, ExecutorConfig, Frozen, GeneralConfig, ModelConfig, Names
from .parse import set_dotted


class SessionLora(Frozen):
    rank: int | None = Field(None, gt=0, description="LoRA rank; None: 8 / 16 / 32 for <100 / 100-500 / >500 examples")
    alpha: float | None = Field(None, gt=0, description="LoRA alpha; None: twice the rank")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the LoRA input")
    targets: Names = Field(ALL_PROJECTIONS, min_length=1, description="linear layers to adapt")


class SessionConfig(Frozen):
    """One `forgetlab session train`: settings left at None are chosen from the data size (sessions/settings.py)."""

    renamed: ClassVar[dict[str, str]] = {k: f"lora.{k}" for k in ("rank", "alpha", "dropout", "targets")}

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
    lora: SessionLora = SessionLora()
    preset: Literal["size-tiers"] | None = Field(None, description="size-tiers: heavier training tiers by data size "
                                                 "(rank 8/16/32, epochs 10/5/3 whatever the rephrasings, batch × "
                                                 "accumulation 2×4 / 2×4 / 4×2, warmup min(0.1 × rows, 50), gradient "
                                                 "checkpointing, bf16 on CUDA and MPS); None: the measured default")
    epochs: int | None = Field(None, gt=0, description="None: by data size, 5 / 3 / 2 with rephrasings (the default), "
                               "10 / 5 / 3 without")
    lr: float = Field(3e-3, gt=0, description="peak learning rate")
    batch_size: int | None = Field(None, gt=0, description="examples per forward pass; None: 8, or 4 for long records")
    grad_accum: int | None = Field(None, gt=0, description="forward passes per step; None: effective batch of 8")
    max_length: int | None = Field(None, gt=8, description="token limit per record; None: 512 / 640 / 768 by data size, "
                                   "or the longest record if shorter")
    warmup_steps: int | None = Field(None, ge=0, description="None: min(0.1 × total steps, 50)")
    gradient_checkpointing: bool = Field(False, description="recompute activations in the backward pass: less memory, "
                                         "about a third slower")
    seed: int = Field(0, description="seeds the held-out split, LoRA init, shuffling, replay and dropout")
    keep_epochs: int = Field(2, ge=0, description="the adapters of the N epochs before the last kept with the session "
                             "(`session rollback --to K --epoch E` returns to one of them; 0: only the final one)")
    max_new_tokens: int = Field(48, gt=0, description="answer length when scoring held-out questions")
    warn_drop: float = Field(0.1, ge=0, le=1, description="warn when an earlier session's recall drops by more")
    general: GeneralConfig = GeneralConfig()


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

