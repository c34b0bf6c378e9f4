"""The depth-kernel ablations of g: the paper's wider depth kernels as report rows next to a 1-deep g."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from voldefense.config import parse_config
from voldefense.runner import _g_certifier, build_models


def test_depth_kernel_ablations_change_only_the_depth_kernel_and_lose_the_certificate():
    config = parse_config(
        {
            "model": {"backbone": "vgg16", "width": 0.0625, "depth_kernel": 1, "aggregation": "majority_vote"},
            "ablations": ["depth_kernel_3", "depth_kernel_full"],
        }
    )
    data = SimpleNamespace(image_shape=(3, 32, 32), num_classes=3)
    plans = build_models(config, data)
    assert list(plans) == ["f", "g", "g_depth_kernel_3", "g_depth_kernel_full"]
    depths = {
        name: {m.kernel_size[0] for m in plan.model.modules() if isinstance(m, nn.Conv3d)}
        for name, plan in plans.items()
        if name != "f"
    }
    # g at depth kernel 1 is f run on each patch (no Conv3d at all); 2N - 1 = 7 for N = 4 patches
    assert depths == {"g": set(), "g_depth_kernel_3": {3}, "g_depth_kernel_full": {7}}
    assert len({plan.signature for plan in plans.values()}) == 4
    certify, reason = _g_certifier(plans["g"], config, data)
    assert certify is not None and reason == ""
    certify, reason = _g_certifier(plans["g_depth_kernel_3"], config, data)
    assert certify is None and reason.startswith("not defined")
    volume = torch.rand(2, 3, 32, 32)
    assert plans["g_depth_kernel_full"].model.patch_logits(volume).shape == (2, 4, 3)
