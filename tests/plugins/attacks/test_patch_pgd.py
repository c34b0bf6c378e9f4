"""patch_pgd: edits only the patch box, stronger with area, full image succeeds, search, mode restored."""

from __future__ import annotations

import pytest
import torch

from voldefense.attacks.regions import box_mask
from voldefense.errors import ConfigError
from voldefense.evaluation import evaluate_attack, summarize
from voldefense.testing import make_toy_images


def test_spec(registry):
    spec = registry.get("attack", "patch_pgd")
    assert spec.size_unit == "area" and spec.white_box
    for bad in (dict(location="corner"), dict(init="zeros"), dict(step_size=0), dict(candidates=0)):
        with pytest.raises(ConfigError):
            spec.build(**bad)


def test_changes_stay_inside_the_reported_box(registry, trained):
    model, xt, yt = trained
    result = registry.get("attack", "patch_pgd").build(steps=5).run(model, xt, yt, 0.05, seed=1)
    (h, w) = result.extra["patch_size"][0]
    assert (h, w) == (7, 7)
    mask = box_mask(torch.tensor(result.extra["locations"]), h, w, 32, 32).bool()
    assert torch.equal(result.adversarial * ~mask, xt * ~mask)
    assert result.adversarial.min() >= 0 and result.adversarial.max() <= 1
    assert int(result.queries.max()) <= 6


def test_more_area_never_helps_and_full_image_succeeds(registry, trained):
    model, xt, yt = trained
    attack = registry.get("attack", "patch_pgd").build(steps=20)
    outcomes = [evaluate_attack(model, attack, xt, yt, a, seed=0) for a in (0.01, 0.05, 0.25, 1.0)]
    accs = [summarize(o).attacked_accuracy for o in outcomes]
    clean = summarize(outcomes[0]).clean_accuracy
    assert clean > 0.9
    assert all(b <= a + 0.05 for a, b in zip(accs, accs[1:], strict=False)), accs
    assert accs[2] < clean - 0.5  # a 25% patch drives accuracy well below clean
    assert accs[3] <= 0.05


def test_search_is_at_least_as_strong_and_counts_its_queries(registry, trained):
    model, xt, yt = trained
    spec = registry.get("attack", "patch_pgd")
    plain = spec.build(steps=10)
    search = spec.build(steps=10, location="search", candidates=3, search_steps=3)
    acc_plain = summarize(evaluate_attack(model, plain, xt, yt, 0.1)).attacked_accuracy
    out = evaluate_attack(model, search, xt, yt, 0.1)
    assert summarize(out).attacked_accuracy <= acc_plain + 0.05
    assert float(out.queries.max()) <= 3 * 4 + 11


def test_mode_restored_and_deterministic(registry, trained):
    model, xt, yt = trained
    attack = registry.get("attack", "patch_pgd").build(steps=3)
    model.train()
    a = attack.run(model, xt[:4], yt[:4], 0.1, seed=2)
    assert all(m.training for m in model.modules())
    model.eval()
    assert torch.equal(a.adversarial, attack.run(model, xt[:4], yt[:4], 0.1, seed=2).adversarial)


def test_attacks_through_a_volumized_pipeline(registry):
    from voldefense.specs import MetricSpec
    from voldefense.volumizer import Volumizer

    spec = MetricSpec(
        name="variance",
        factory=lambda: lambda x, reference=None: x.flatten(1).var(1),
        description="v",
        distance=False,
    )

    class Pipeline(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.volumizer = Volumizer(patch_size=8, metric=spec)
            self.net = torch.nn.Sequential(
                torch.nn.Conv3d(3, 4, (1, 3, 3)), torch.nn.AdaptiveAvgPool3d((None, 1, 1))
            )

        def forward(self, x):  # per-patch logits (B, N, 4) averaged over patches
            return self.net(self.volumizer(x)).flatten(2).transpose(1, 2).mean(1)

    torch.manual_seed(0)
    model = Pipeline().eval()
    x, _ = make_toy_images(6, seed=4)
    y = model(x).argmax(1)  # attack the pipeline's own decisions
    result = registry.get("attack", "patch_pgd").build(steps=30).run(model, x, y, 1.0)
    assert float((model(result.adversarial).argmax(1) != y).float().mean()) >= 0.8
