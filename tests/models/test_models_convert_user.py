"""The converter on networks users actually write (torchvision is not a dependency: each is written here as a
user would), and the converter-rule extension point for layers it cannot handle."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from voldefense.errors import ConfigError
from voldefense.models.convert import ConversionContext, convert_to_3d
from voldefense.models.inflate import inflate_into
from voldefense.testing import perturb_weights

# -- ResNet-18 style: basic blocks, projection shortcuts, an empty Sequential as the identity shortcut ----------


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 4):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        layers, cin = [], width
        for i, stride in enumerate((1, 2, 2, 2)):
            cout = width * 2**i
            layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.layers(torch.relu(self.bn1(self.conv1(x)))))))


# -- MobileNetV2 style: inverted residuals, depthwise convolutions, squeeze-excitation, hardswish ------------


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.fc2 = nn.Conv2d(reduced, channels, 1)

    def forward(self, x):
        return x * nn.functional.hardsigmoid(self.fc2(torch.relu(self.fc1(self.pool(x)))))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int = 4):
        super().__init__()
        hidden = cin * expand
        self.use_residual = stride == 1 and cin == cout
        self.block = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.Hardswish(),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),  # depthwise
            nn.BatchNorm2d(hidden),
            nn.Hardswish(),
            SqueezeExcite(hidden, max(1, hidden // 4)),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )

    def forward(self, x):
        out = self.block(x)
        return x + out if self.use_residual else out


def mobilenet_v2(num_classes: int = 10, width: int = 8) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, width, 3, 1, 1, bias=False),
        nn.BatchNorm2d(width),
        nn.Hardswish(),
        InvertedResidual(width, width, 1),
        InvertedResidual(width, 2 * width, 2),
        InvertedResidual(2 * width, 2 * width, 1),
        nn.Conv2d(2 * width, 4 * width, 1, bias=False),
        nn.BatchNorm2d(4 * width),
        nn.Hardswish(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(4 * width, num_classes),
    )


# -- DenseNet style: each layer's output concatenated to its input along the channels --------------------------


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(cin)
        self.conv = nn.Conv2d(cin, growth, 3, 1, 1, bias=False)

    def forward(self, x):
        return torch.cat([x, self.conv(torch.relu(self.norm(x)))], dim=1)


def densenet_block(num_classes: int = 10, growth: int = 4, layers: int = 3) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 2 * growth, 3, 1, 1, bias=False),
        *[DenseLayer(2 * growth + i * growth, growth) for i in range(layers)],
        nn.BatchNorm2d(2 * growth + layers * growth),
        nn.ReLU(),
        nn.AvgPool2d(2),  # a transition
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * growth + layers * growth, num_classes),
    )


NETWORKS = {"resnet18": ResNet18, "mobilenet_v2": mobilenet_v2, "densenet_block": densenet_block}


@pytest.mark.parametrize("name", sorted(NETWORKS))
@pytest.mark.parametrize("depth_kernel", [1, 3])
def test_user_networks_convert_inflate_and_train(name, depth_kernel):
    torch.manual_seed(0)
    f = perturb_weights(NETWORKS[name]())
    g = convert_to_3d(NETWORKS[name](), depth_kernel=depth_kernel)
    inflate_into(g, f)
    volume = torch.rand(2, 3, 4, 16, 16)
    with torch.no_grad():  # inflated and not yet fine-tuned: f on each patch
        per_patch = torch.stack([f(volume[:, :, n]) for n in range(4)], dim=1)
        assert torch.allclose(g.eval()(volume), per_patch, atol=1e-4)
    g.train()
    out = g(volume)
    assert out.shape == (2, 4, 10)
    nn.functional.cross_entropy(out.reshape(-1, 10), torch.randint(0, 10, (8,))).backward()
    grads = [p.grad for p in g.parameters()]
    assert all(grad is not None and torch.isfinite(grad).all() for grad in grads)
    assert sum(float(grad.abs().sum()) for grad in grads) > 0


# -- the extension point: a layer the converter cannot handle ---------------------------------------------------


class ChannelScale(nn.Module):
    """A custom layer with its own parameter: the converter cannot know how forward uses it."""

    def __init__(self, channels: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels))

    def forward(self, x):
        return x * self.scale.view(-1, 1, 1)  # 2D-only: on a volume it would scale the wrong axis


class ChannelScale3d(nn.Module):
    def __init__(self, scale: nn.Parameter):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return x * self.scale.view(-1, 1, 1, 1)


def scaled_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), ChannelScale(4), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    )


def test_an_unknown_layer_names_itself_and_the_extension_point():
    with pytest.raises(ConfigError) as err:
        convert_to_3d(scaled_net(), depth_kernel=3)
    message = str(err.value)
    assert "'1' (ChannelScale)" in message and "scale" in message
    assert "voldefense_to_3d" in message and "rules=" in message and "docs/plugins.md" in message
    assert "\n" not in message


def _check_rule_applies(g: nn.Module, f: nn.Module) -> None:
    assert isinstance(g.net[1], ChannelScale3d)
    volume = torch.rand(2, 3, 4, 8, 8)
    with torch.no_grad():
        per_patch = torch.stack([f(volume[:, :, n]) for n in range(4)], dim=1)
        assert torch.allclose(g.eval()(volume), per_patch, atol=1e-5)


def test_a_rule_passed_to_the_converter_handles_the_layer():
    seen: list[ConversionContext] = []

    def rule(layer: ChannelScale, context: ConversionContext) -> nn.Module:
        seen.append(context)
        return ChannelScale3d(layer.scale)

    f = scaled_net().eval()
    with torch.no_grad():
        f[1].scale.mul_(torch.tensor([0.5, 1.5, 2.0, -1.0]))
    g = convert_to_3d(f, depth_kernel=3, rules={ChannelScale: rule})
    assert seen[0].path == "1" and seen[0].depth_kernel == 3 and seen[0].depth_padding == 1
    _check_rule_applies(g, f)
    assert [n for n, _ in g.named_parameters()] == [f"net.{n}" for n, _ in f.named_parameters()]


def test_a_layer_with_its_own_voldefense_to_3d_method_converts_itself():
    class SelfConverting(ChannelScale):
        def voldefense_to_3d(self, context: ConversionContext) -> nn.Module:
            return ChannelScale3d(self.scale)

    f = scaled_net()
    f[1] = SelfConverting(4)
    _check_rule_applies(convert_to_3d(f.eval(), depth_kernel=3), f)


def test_a_rule_that_returns_no_module_is_an_error():
    with pytest.raises(ConfigError, match="returned a int, not an nn.Module"):
        convert_to_3d(scaled_net(), rules={ChannelScale: lambda layer, context: 3})
