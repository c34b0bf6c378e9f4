"""Run configuration: the typed schema, its two validation passes (`parse`, `checks`) and the loader (`load`)."""

from voldefense.config.checks import check_config, defense_label, model_names
from voldefense.config.load import (
    apply_override,
    config_to_dict,
    dump_config,
    load_config,
    read_yaml,
)
from voldefense.config.parse import parse_config
from voldefense.config.schema import (
    AttackConfig,
    Config,
    DataConfig,
    DefenseConfig,
    EvaluationConfig,
    LossConfig,
    ModelConfig,
    OptimizerConfig,
    OutputConfig,
    ScheduleConfig,
    SyllabusConfig,
    TrainingConfig,
    VolumizerConfig,
)

__all__ = [
    "AttackConfig",
    "Config",
    "DataConfig",
    "DefenseConfig",
    "EvaluationConfig",
    "LossConfig",
    "ModelConfig",
    "OptimizerConfig",
    "OutputConfig",
    "ScheduleConfig",
    "SyllabusConfig",
    "TrainingConfig",
    "VolumizerConfig",
    "apply_override",
    "check_config",
    "config_to_dict",
    "defense_label",
    "dump_config",
    "load_config",
    "model_names",
    "parse_config",
    "read_yaml",
]
