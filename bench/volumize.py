"""Volumization throughput per metric, next to a straightforward per-patch numpy/scipy reference.

    python bench/volumize.py                      # CIFAR-size and ImageNet-size, every metric
    python bench/volumize.py --metrics mi mse --json results.json

CIFAR-size: 3x32x32 images, 16x16 patches (N = 4), all images in one call. ImageNet-size: 3x224x224, 16x16
patches (N = 196), smaller batches. The reference loops over images and patches in Python with numpy/scipy
(np.histogram, np.histogram2d, scipy.stats.entropy), on a subset, and is extrapolated per image. Both use the
same definitions (pooled channels, `bins` bins, bits, auto reference = lowest-entropy patch); the script also
reports how often both produce the same permutation.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import scipy.stats
import torch

from voldefense import jsonio
from voldefense.volumizer import Volumizer

METRICS = ("entropy", "mi", "kl", "psnr", "max_norm", "joint_entropy", "mse")
BINS = 32
SMOOTHING = 0.5


# -- the per-patch reference ---------------------------------------------------------------------------------


def _hist(p: np.ndarray) -> np.ndarray:
    return np.histogram(p.ravel(), bins=BINS, range=(0.0, 1.0))[0]


def _ref_score(metric: str, p: np.ndarray, r: np.ndarray | None) -> float:
    if metric == "entropy":
        return float(scipy.stats.entropy(_hist(p), base=2))
    assert r is not None
    if metric in ("mi", "joint_entropy"):
        joint = np.histogram2d(p.ravel(), r.ravel(), bins=BINS, range=[[0, 1], [0, 1]])[0]
        je = float(scipy.stats.entropy(joint.ravel(), base=2))
        if metric == "joint_entropy":
            return je
        return float(
            scipy.stats.entropy(joint.sum(1), base=2) + scipy.stats.entropy(joint.sum(0), base=2) - je
        )
    if metric == "kl":
        return float(scipy.stats.entropy(_hist(p) + SMOOTHING, _hist(r) + SMOOTHING, base=2))
    mse = float(np.mean((p - r) ** 2))
    if metric == "mse":
        return mse
    if metric == "max_norm":
        return float(np.max(np.abs(p - r)))
    return 100.0 if mse == 0 else min(100.0, 10 * np.log10(1.0 / mse))


def reference_volumize(
    images: np.ndarray, metric: str, patch: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Loop over images and patches: the obvious implementation, ascending order, auto reference.
    Returns (volumes, perms, scores)."""
    volumes, perms, all_scores = [], [], []
    for image in images.astype(np.float64):
        c, h, w = image.shape
        patches = [
            image[:, i : i + patch, j : j + patch] for i in range(0, h, patch) for j in range(0, w, patch)
        ]
        ref = None
        if metric != "entropy":
            ref = patches[int(np.argmin([_ref_score("entropy", p, None) for p in patches]))]
        scores = np.array([_ref_score(metric, p, ref) for p in patches])
        perm = np.argsort(scores, kind="stable")
        volumes.append(np.stack([patches[k] for k in perm], axis=1))
        perms.append(perm)
        all_scores.append(scores)
    return np.stack(volumes), np.stack(perms), np.stack(all_scores)


# -- measurement --------------------------------------------------------------------------------------------


def make_images(n: int, size: int, seed: int) -> torch.Tensor:
    # 8-bit-valued, smooth-ish images (blurred noise plus noise), so histograms are not uniform.
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, max(1, size // 8), max(1, size // 8), generator=g)
    smooth = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    noisy = (smooth + 0.1 * torch.randn(n, 3, size, size, generator=g)).clamp(0, 1)
    return (noisy * 255).round() / 255


def time_ours(volumizer: Volumizer, images: torch.Tensor, batch: int, device: torch.device) -> float:
    images = images.to(device)
    volumizer.volumize(images[: min(batch, 8)])  # warm-up (imports, allocator)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(0, images.shape[0], batch):
        volumizer.volumize(images[i : i + batch])
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench(args: argparse.Namespace) -> list[dict]:
    device = torch.device(
        args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    settings = [
        ("cifar", 32, args.cifar_images, args.cifar_batch, args.cifar_reference_images),
        ("imagenet", 224, args.imagenet_images, args.imagenet_batch, args.imagenet_reference_images),
    ]
    rows = []
    for name, size, n, batch, n_ref in settings:
        if n == 0:
            continue
        images = make_images(n, size, seed=0)
        for metric in args.metrics:
            volumizer = Volumizer(
                16,
                metric=metric,
                order="ascending",
                metric_options={"bins": BINS} if metric in ("entropy", "mi", "kl", "joint_entropy") else None,
            )
            seconds = time_ours(volumizer, images, batch, device)
            subset = images[:n_ref]
            start = time.perf_counter()
            _, _, ref_scores = reference_volumize(subset.numpy(), metric, 16)
            ref_seconds = time.perf_counter() - start
            _, ours_perm = volumizer.volumize(subset.to(device))
            # Agreement: our permutation sorts the reference's scores (up to float32-vs-float64 ties).
            ranked = np.take_along_axis(ref_scores, ours_perm.cpu().numpy(), axis=1)
            agree = float((np.diff(ranked, axis=1) >= -1e-5).all(axis=1).mean())
            ours_rate, ref_rate = n / seconds, n_ref / ref_seconds
            row = {
                "setting": name,
                "image": f"3x{size}x{size}",
                "metric": metric,
                "images": n,
                "batch": batch,
                "seconds": round(seconds, 4),
                "images_per_s": round(ours_rate, 1),
                "reference_images": n_ref,
                "reference_images_per_s": round(ref_rate, 2),
                "speedup": round(ours_rate / ref_rate, 1),
                "agrees_with_reference": round(agree, 3),
            }
            rows.append(row)
            print(
                f"{name:<9} {metric:<14} {n:>6} {seconds:>8.3f} {ours_rate:>12.0f} {ref_rate:>12.1f} "
                f"{ours_rate / ref_rate:>8.1f}x {agree:>6.1%}",
                flush=True,
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", nargs="+", default=list(METRICS), choices=METRICS)
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    parser.add_argument("--cifar-images", type=int, default=10_000)
    parser.add_argument("--cifar-batch", type=int, default=10_000)
    parser.add_argument("--cifar-reference-images", type=int, default=200)
    parser.add_argument("--imagenet-images", type=int, default=256)
    parser.add_argument("--imagenet-batch", type=int, default=64)
    parser.add_argument("--imagenet-reference-images", type=int, default=4)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    conditions = {
        "torch": torch.__version__,
        "device": args.device,
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "bins": BINS,
    }
    print(f"conditions: {conditions}")
    print(
        f"{'setting':<9} {'metric':<14} {'images':>6} {'seconds':>8} {'ours img/s':>12} {'ref img/s':>12} "
        f"{'ratio':>9} {'agree':>6}"
    )
    rows = bench(args)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(jsonio.dumps({"conditions": conditions, "results": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
