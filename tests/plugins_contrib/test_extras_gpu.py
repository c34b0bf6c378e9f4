"""The extras on a CUDA device: results stay on the device and agree with the CPU where they must."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.gpu


def test_ssim_on_cuda_matches_cpu(extras_registry):
    metric = extras_registry.get("metric", "ssim").build()
    x, ref = torch.rand(64, 3, 16, 16), torch.rand(1, 3, 16, 16)
    got = metric(x.cuda(), ref.cuda())
    assert got.device.type == "cuda"
    assert torch.allclose(got.cpu(), metric(x, ref), atol=1e-5)


def test_wide_resnet_3d_and_pal_weighted_on_cuda(extras_registry):
    convert = pytest.importorskip("voldefense.models.convert")
    f = extras_registry.get("backbone", "wide_resnet").build(num_classes=5, width=0.25).cuda()
    g = convert.convert_to_3d(f, depth_kernel=3).cuda()
    logits = g(torch.rand(2, 3, 4, 16, 16, device="cuda"))
    assert logits.shape == (2, 4, 5) and logits.device.type == "cuda"
    loss = extras_registry.get("loss", "pal_weighted").build(decay=0.8)(logits, torch.tensor([1, 2]).cuda())
    loss.backward()
    assert loss.device.type == "cuda" and torch.isfinite(loss)


def test_sparse_rs_on_cuda(extras_registry):
    from voldefense.testing import fit, make_toy_images, tiny_cnn

    x, y = make_toy_images(160, image_size=16, num_classes=4, seed=0)
    model = tiny_cnn(4, width=8)
    fit(model, x, y, epochs=12, seed=0)
    model = model.cuda()
    attack = extras_registry.get("attack", "sparse_rs").build(max_queries=300, batch_size=16)
    result = attack.run(model, x[:32].cuda(), y[:32].cuda(), 16, seed=0)
    assert result.adversarial.device.type == "cuda" and result.queries.device.type == "cuda"
    assert (result.queries <= 300).all()
    assert ((result.adversarial != x[:32].cuda()).any(1).flatten(1).sum(1) <= 16).all()
    again = attack.run(model, x[:32].cuda(), y[:32].cuda(), 16, seed=0)
    assert torch.equal(again.adversarial, result.adversarial)
    with torch.no_grad():
        fooled = model(result.adversarial).argmax(1).cpu() != y[:32]
    assert fooled.tolist() == result.extra["successful"]
    assert result.extra["success_rate"] > 0.3
