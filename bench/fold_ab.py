"""g at depth kernel 1, an earlier revision against this checkout, in one process: same weights, same logits?
and the training-step / inference time of each, steps interleaved (A, B, B, A, ...) so machine load hits both.

The earlier revision is imported as a renamed package `voldefense_old`, made from git (here the commit before
`depth_kernel 1` ran f per patch, when g was a Converted3d whose fold path used torch.func.functional_call):

    mkdir -p /tmp/old && git archive 9dbb520 voldefense | tar -x -C /tmp/old
    mv /tmp/old/voldefense /tmp/old/voldefense_old
    grep -rl voldefense /tmp/old/voldefense_old |
        xargs sed -i -E 's/\\bvoldefense\\b(\\.|:| import|$|")/voldefense_old\\1/g'
    OMP_NUM_THREADS=1 PYTHONPATH=/tmp/old:. python bench/fold_ab.py

Prints, per built-in backbone: the largest logit, gradient and buffer difference after loading the old g's state
dict into the new g (train and eval mode), then the median wall and CPU (process) time of each path and their
ratio new/old. CPU time is the steadier figure on a shared machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from voldefense.models.factory import build_model
from voldefense.models.losses import PatchAggregateLoss

BACKBONES = ("vgg16", "resnet50", "inception_v3", "efficientnet_b0")


def step_fn(model: torch.nn.Module, volumes: torch.Tensor, labels: torch.Tensor, train: bool) -> Callable[[], None]:
    loss, optimizer = PatchAggregateLoss(), torch.optim.SGD(model.parameters(), lr=1e-3)
    model.train(train)

    def step() -> None:
        if train:
            optimizer.zero_grad(set_to_none=True)
            loss(model(volumes), labels).backward()
            optimizer.step()
        else:
            with torch.no_grad():
                model(volumes)

    return step


def max_differences(old: torch.nn.Module, new: torch.nn.Module, volumes: torch.Tensor, train: bool) -> list[float]:
    old.train(train)
    new.train(train)
    old.zero_grad(set_to_none=True)
    new.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    a = old(volumes)
    torch.manual_seed(1)
    b = new(volumes)
    a.square().sum().backward()
    b.square().sum().backward()
    pairs = zip(old.parameters(), new.parameters(), strict=True)
    grads = [float((p.grad.reshape(q.grad.shape) - q.grad).abs().max()) for p, q in pairs]
    buffers = [float((p.float() - q.float()).abs().max()) for p, q in zip(old.buffers(), new.buffers(), strict=True)]
    return [float((a - b).detach().abs().max()), max(grads), max(buffers, default=0.0)]


def main() -> None:
    from voldefense_old.models.factory import build_model as build_old

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=0.125)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--pairs", type=int, default=9, help="timed steps per path")
    args = parser.parse_args()
    for name in BACKBONES:
        torch.manual_seed(0)
        old = build_old(name, dims=3, num_classes=10, width=args.width, depth_kernel=1)
        new = build_model(name, dims=3, num_classes=10, width=args.width, depth_kernel=1)
        new.load_state_dict(old.state_dict())
        volumes = torch.rand(args.batch, 3, 4, 16, 16)
        labels = torch.randint(0, 10, (args.batch,))
        for train in (False, True):
            logit, grad, buffer = max_differences(old, new, volumes, train)
            mode = "train" if train else "eval"
            print(f"{name} {mode}: max |diff| logits {logit:.1e}, gradients {grad:.1e}, buffers {buffer:.1e}")
        for train in (True, False):
            a, b = step_fn(old, volumes, labels, train), step_fn(new, volumes, labels, train)
            for fn in (a, b, a, b):  # warm-up
                fn()
            times: dict[str, list[tuple[float, float]]] = {"old": [], "new": []}
            for i in range(args.pairs):
                for key, fn in (("old", a), ("new", b)) if i % 2 == 0 else (("new", b), ("old", a)):
                    wall, cpu = time.perf_counter(), time.process_time()
                    fn()
                    times[key].append((time.perf_counter() - wall, time.process_time() - cpu))
            wall_old, wall_new = (1e3 * statistics.median(t[0] for t in times[k]) for k in ("old", "new"))
            cpu_old, cpu_new = (1e3 * statistics.median(t[1] for t in times[k]) for k in ("old", "new"))
            print(
                f"{name} {'train step' if train else 'inference'}: wall old {wall_old:.1f} ms, new {wall_new:.1f} "
                f"ms (x{wall_new / wall_old:.2f}); cpu old {cpu_old:.1f} ms, new {cpu_new:.1f} ms "
                f"(x{cpu_new / cpu_old:.2f})",
                flush=True,
            )


if __name__ == "__main__":
    main()
