"""Validated, frozen configuration. YAML files map one-to-one onto these models; `--set a.b=value` overrides.

core.py holds the pieces (model, LoRA, training, data, evaluation, general questions, run, executor), parse.py the
reading (YAML, --set, one-line errors, --help text), and one module per workflow: study (sequential, compare),
sessions, unlearn (unlearn, RTT, sweep), online. Importing this package never imports torch.
"""

from .core import (
                   ALL_PROJECTIONS,
                   LORA_PRESETS,
                   DataConfig,
                   EvalConfig,
                   ExecutorConfig,
                   FactsConfig,
                   Frozen,
                   GeneralConfig,
                   LoraSettings,
                   MMLUConfig,
                   ModelConfig,
                   RunConfig,
                   TrainConfig,
)
from .online import PRESETS, DetectConfig, GateConfig, MemoryConfig, OnlineConfig, PatternConfig, UpdateConfig
from .parse import build_config, describe_fields, dump_yaml, field_names, key_hint, parse_set, read_yaml, set_dotted, yaml_value
from .sessions import SESSION_SETTINGS, SessionCompareConfig, SessionConfig, SessionLora
from .study import (
                   CompareConfig,
                   DiagnosticsConfig,
                   EWCConfig,
                   GatedConfig,
                   KLConfig,
                   LandscapeConfig,
                   OLoRAConfig,
                   ReplayConfig,
                   SequentialConfig,
                   StrategyConfig,
)
from .unlearn import (
                   ALIASES,
                   LEARNING_RATES,
                   METHOD_DEFAULTS,
                   SWEEP_ALIASES,
                   GuardConfig,
                   LearnFirstConfig,
                   RTTConfig,
                   SweepConfig,
                   UnlearnConfig,
                   UnlearnLora,
                   UnlearnMethodConfig,
                   UnlearnTrainConfig,
                   rtt_section,
)


