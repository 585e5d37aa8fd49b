"""Training a ResNet on a `Dataset`: config and recipes, the pure pieces of a step, devices, torchrun, the
trainer, what a run will do before it starts (`estimate`) and what it did after (`verdict`).

    from resnet_core.train import Trainer, default_recipe
    result = Trainer(cfg, data, default_recipe(cfg, data.name)).run()
"""

from .config import DEVICES, OPTIMIZERS, SCHEDULES, Optimizer, Schedule, TrainConfig, validate_train_config
from .device import GPU_PEAK_FLOPS, peak_flops, resolve_device
from .distributed import DistInfo, dist_from_env, process_group, state_digest
from .ops import augment_batch, lr_at, normalizer
from .recipes import (
    EXPECTED_BUILTIN_ACCURACY,
    EXPECTED_BUILTIN_ACCURACY_RESNET20,
    EXPECTED_CIFAR10_ACCURACY,
    RACE_RECIPES,
    RECIPES,
    TEACHING,
    default_recipe,
    expected_accuracy,
    expected_accuracy_at,
    scaled_lr,
)
from .trainer import (
    MAX_STEP_HISTORY,
    EndReason,
    History,
    Progress,
    ProgressKind,
    TestPredictions,
    Trainer,
    TrainResult,
    training_flops,
)

__all__ = [
    "DEVICES", "EXPECTED_BUILTIN_ACCURACY", "EXPECTED_BUILTIN_ACCURACY_RESNET20", "EXPECTED_CIFAR10_ACCURACY",
    "GPU_PEAK_FLOPS", "MAX_STEP_HISTORY", "OPTIMIZERS", "RACE_RECIPES", "RECIPES", "SCHEDULES", "TEACHING",
    "DistInfo", "EndReason", "History", "Optimizer", "Progress", "ProgressKind", "Schedule", "TestPredictions",
    "TrainConfig", "TrainResult", "Trainer", "augment_batch", "default_recipe", "dist_from_env", "expected_accuracy",
    "expected_accuracy_at", "lr_at", "normalizer", "peak_flops", "process_group", "resolve_device", "scaled_lr",
    "state_digest", "training_flops", "validate_train_config",
]
