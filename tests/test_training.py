"""The training loop stops on a non-finite loss or non-finite weights with one line naming the model, epoch and
step, and keeps the last good checkpoint."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from voldefense.checkpoint import load_checkpoint
from voldefense.config.schema import OptimizerConfig, ScheduleConfig, TrainingConfig
from voldefense.distributed import DistContext
from voldefense.errors import TrainingError
from voldefense.training import ShuffleSampler, TrainJob, train


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3 * 4 * 4, 3)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.linear(images.flatten(1))


class PoisonedLoss:
    """Cross-entropy, but multiplied by `poison` (NaN, inf) at one call: a run that diverges there. With
    `poison=None` the value stays finite but its gradient is NaN (sqrt at 0), so the weights go bad silently."""

    def __init__(self, at_call: int, poison: float | None = float("nan")):
        self.at_call, self.poison, self.calls = at_call, poison, 0

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        loss = nn.functional.cross_entropy(logits, labels)
        if self.calls != self.at_call:
            return loss
        if self.poison is None:
            return loss + (logits - logits.detach()).square().sum().sqrt()
        return loss * self.poison


def job_for(tmp_path, loss) -> TrainJob:
    torch.manual_seed(0)
    data = TensorDataset(torch.rand(32, 3, 4, 4), torch.randint(0, 3, (32,)))
    return TrainJob("g", Classifier(), loss, "image", data, ShuffleSampler(32, seed=0), tmp_path / "g.pt")


def run(job: TrainJob, epochs: int = 3) -> None:
    config = TrainingConfig(epochs=epochs, batch_size=8)  # 4 steps per epoch
    train(job, config, OptimizerConfig(lr=0.1), ScheduleConfig(name="constant"), device=torch.device("cpu"),
          amp=False, context=DistContext())  # fmt: skip


def test_a_nan_loss_stops_training_naming_model_epoch_and_step_and_keeps_the_last_checkpoint(tmp_path):
    good = job_for(tmp_path / "good", PoisonedLoss(at_call=0))
    run(good, epochs=1)
    after_epoch_1 = good.model.linear.weight.detach().clone()

    job = job_for(tmp_path, PoisonedLoss(at_call=7))  # epoch 2, step 3
    with pytest.raises(TrainingError) as info:
        run(job)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("training g stopped: the loss is nan at epoch 2, step 3 of 4 (lr 0.1)")
    assert f"the last good checkpoint {tmp_path / 'g.pt'} is kept" in message and "optimizer.lr" in message
    state = load_checkpoint(tmp_path / "g.pt")
    assert state["epoch"] == 1 and not state["complete"]
    assert torch.equal(state["model"]["linear.weight"], after_epoch_1)  # the same seed replays epoch 1 exactly


def test_a_nan_loss_before_any_checkpoint_says_none_was_written(tmp_path):
    with pytest.raises(TrainingError, match=r"epoch 1, step 1 of 4 .*no checkpoint was written before it"):
        run(job_for(tmp_path, PoisonedLoss(at_call=1, poison=float("inf"))))
    assert not (tmp_path / "g.pt").exists()


def test_weights_made_non_finite_by_an_epochs_last_step_are_never_saved(tmp_path):
    # A finite loss with a NaN gradient at the last step of epoch 2: the weights are NaN after that step.
    job = job_for(tmp_path, PoisonedLoss(at_call=8, poison=None))
    with pytest.raises(TrainingError, match=r"training g stopped: the weights became non-finite at epoch 2, step 4"):
        run(job)
    state = load_checkpoint(tmp_path / "g.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in state["model"].values())
