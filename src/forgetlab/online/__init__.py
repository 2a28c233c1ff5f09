"""Online learning from every chat turn: fact detection, a fact memory, per-turn LoRA updates kept near the base."""

from .config import PRESETS, OnlineConfig
from .detector import Fact, detect
from .learner import OnlineLearner

__all__ = ["PRESETS", "Fact", "OnlineConfig", "OnlineLearner", "detect"]
