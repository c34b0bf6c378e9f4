"""The depth-kernel ablations of g: the paper's wider depth kernels as report rows next to a 1-deep g."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from voldefense.config import parse_config
from voldefense.run.contenders import build_contenders
from voldefense.run.resolve import resolve


def test_depth_kernel_ablations_change_only_the_depth_kernel_and_lose_the_certificate():
    config = parse_config(
        {
            "model": {"backbone": "vgg16", "width": 0.0625, "depth_kernel": 1, "aggregation": "majority_vote"},
            "ablations": ["depth_kernel_3", "depth_kernel_full"],
        }
    )
    data = SimpleNamespace(image_shape=(3, 32, 32), num_classes=3)
    nets = build_contenders(resolve(config), data)
    assert list(nets) == ["f", "g", "g_depth_kernel_3", "g_depth_kernel_full"]
    depths = {
        name: {m.kernel_size[0] for m in net.model.modules() if isinstance(m, nn.Conv3d)}
        for name, net in nets.items()
        if name != "f"
    }
    # g at depth kernel 1 is f run on each patch (no Conv3d at all); 2N - 1 = 7 for N = 4 patches
    assert depths == {"g": set(), "g_depth_kernel_3": {3}, "g_depth_kernel_full": {7}}
    assert nets["g_depth_kernel_3"].details["depth_kernel"] == 3
    assert len({net.signature for net in nets.values()}) == 4
    assert nets["g"].certify is not None
    assert nets["g_depth_kernel_3"].certify is None and nets["g_depth_kernel_3"].no_certificate
    images = torch.rand(2, 3, 32, 32)
    assert nets["g_depth_kernel_full"].model.patch_logits(images).shape == (2, 4, 3)
