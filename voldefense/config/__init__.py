"""Run configuration: the typed schema (`schema`) and its loader/validator (`load`)."""

from voldefense.config.load import (
    apply_override,
    check_config,
    config_to_dict,
    dump_config,
    load_config,
    parse_config,
    read_yaml,
)
from voldefense.config.schema import (
    AttackConfig,
    Config,
    DataConfig,
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
    "dump_config",
    "load_config",
    "parse_config",
    "read_yaml",
]
