"""Digital watermarking (DW; Hayes, "On Visible Adversarial Perturbations & Digital Watermarking", CVPR
Workshops 2018), blind form: find the patch from the classifier's saliency, mask it, inpaint, classify.

Hayes treats a visible adversarial patch like a watermark to remove. In the *blind* form the defender does not
know where the patch is; the patch shows up as a dense region of high saliency. Here:

1. saliency: ``|∂ f(x)_ŷ / ∂x|``, maximum over channels, for f's predicted class ŷ (Simonyan et al.'s
   saliency map), min-max normalised to [0, 1] per image;
2. mask: pixels with saliency >= ``threshold``, then a binary erosion of radius ``erosion`` (isolated salient
   pixels, common in natural images, disappear; a dense patch survives) and a dilation of radius ``dilation``
   (the surviving regions grow back, a little past the patch border);
3. inpainting of the masked pixels, then f on the result.

**Inpainting approximation.** Hayes inpaints with OpenCV (Telea's fast-marching method). Here it is torch
only: masked pixels are filled from the border inwards, each ring with the mean of its already known
8-neighbours (an onion-peel order like fast marching, with uniform instead of distance/direction weights), then
``smooth_steps`` Jacobi steps of the 3×3 mean relax the filled region towards a harmonic (diffusion)
inpainting. Known pixels are never changed. On 32×32 images the holes are a few pixels wide, where the two
methods differ little; on large holes Telea preserves edges better.

Cost per image: one forward and one backward pass of f for the saliency, the morphology and inpainting
(cheap tensor ops), one forward pass of f.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from voldefense.defenses.base import DefendedModel, ModelFactory, TrainBudget, Trainer
from voldefense.defenses.lgs import normalise
from voldefense.defenses.preprocessing import (
    check_fraction,
    check_positive_int,
    classifier_behind,
    transform_views,
)


def saliency(classifier: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)`` in [0, 1]: normalised ``max_c |∂ logit_ŷ / ∂x_c|`` for the predicted class ŷ.
    Computed on a detached copy (the mask is a step function of it: no gradient flows back through it)."""
    with torch.enable_grad():
        x = images.detach().requires_grad_(True)
        logits = classifier(x)
        top = logits.argmax(dim=1, keepdim=True)
        (grad,) = torch.autograd.grad(logits.gather(1, top).sum(), x)
    return normalise(grad.abs().amax(dim=1, keepdim=True))


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Binary dilation of ``(B, 1, H, W)`` 0/1 masks by a ``(2r+1)²`` square."""
    if radius == 0:
        return mask
    return F.max_pool2d(mask, 2 * radius + 1, stride=1, padding=radius)


def erode(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Binary erosion by a ``(2r+1)²`` square; pixels outside the image count as set (a patch on the border
    survives)."""
    if radius == 0:
        return mask
    return 1.0 - F.max_pool2d(1.0 - mask, 2 * radius + 1, stride=1, padding=radius)


def saliency_mask(sal: torch.Tensor, threshold: float, erosion: int, dilation: int) -> torch.Tensor:
    """``(B, 1, H, W)`` float 0/1: dense salient regions (see the module docstring)."""
    return dilate(erode((sal >= threshold).to(sal.dtype), erosion), dilation)


def inpaint(images: torch.Tensor, mask: torch.Tensor, smooth_steps: int = 8) -> torch.Tensor:
    """Fill the pixels where ``mask`` (``(B, 1, H, W)``, 1 = missing) is set from the known ones (see the module
    docstring); known pixels are returned unchanged. An image with every pixel masked becomes 0.5 grey.

    Differentiable in the known pixels (the naive attack view's gradient flows through the fill)."""
    kernel = torch.ones(1, 1, 3, 3, dtype=images.dtype, device=images.device)
    c = images.shape[1]
    known = 1.0 - mask
    out = images * known
    hole = mask
    # Onion peel: each ring gets the mean of its known 8-neighbours; at most H + W rings.
    for _ in range(sum(images.shape[-2:])):
        if not bool((hole > 0).any()):
            break
        count = F.conv2d(known, kernel, padding=1)
        total = F.conv2d(out, kernel.expand(c, 1, 3, 3), padding=1, groups=c)
        ring = hole * (count > 0).to(images.dtype)
        if not bool((ring > 0).any()):  # nothing known anywhere: the whole image is masked
            out = out + 0.5 * hole
            break
        out = out + ring * total / count.clamp_min(1.0)
        known = known + ring
        hole = hole - ring
    # Jacobi relaxation of the filled pixels only: the 3x3 mean (replicate-padded), known pixels fixed.
    for _ in range(smooth_steps):
        mean = F.avg_pool2d(F.pad(out, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        out = images * (1.0 - mask) + mean * mask
    return out


class SaliencyInpainting(nn.Module):
    """DW's transform: mask the dense salient regions of `classifier`'s prediction and inpaint them."""

    def __init__(
        self,
        classifier: nn.Module,
        threshold: float = 0.4,
        erosion: int = 1,
        dilation: int = 2,
        smooth_steps: int = 8,
    ):
        super().__init__()
        self.classifier = classifier
        self.threshold = threshold
        self.erosion = erosion
        self.dilation = dilation
        self.smooth_steps = smooth_steps

    def mask(self, images: torch.Tensor) -> torch.Tensor:
        return saliency_mask(saliency(self.classifier, images), self.threshold, self.erosion, self.dilation)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return inpaint(images, self.mask(images), self.smooth_steps)


class DigitalWatermarkingDefense:
    """Blind digital watermarking (Hayes 2018) in front of the run's trained f (nothing is trained; without f, a
    fresh f is trained on clean images with f's budget). The saliency is f's own.

    Options: ``threshold`` (0.4) on the normalised saliency; ``erosion`` (1) and ``dilation`` (2): radii of the
    square structuring elements; ``smooth_steps`` (8): diffusion steps after the onion-peel fill.
    Attack views: ``naive`` (autograd through the inpainting with the mask held fixed: the mask is a step
    function of the image) and ``bpda`` (identity backward through mask-and-inpaint).
    """

    name = "digital_watermarking"

    def __init__(self, threshold: float = 0.4, erosion: int = 1, dilation: int = 2, smooth_steps: int = 8):
        self.threshold = check_fraction(threshold, "digital_watermarking threshold")
        self.erosion = check_positive_int(erosion, "digital_watermarking erosion", minimum=0)
        self.dilation = check_positive_int(dilation, "digital_watermarking dilation", minimum=0)
        self.smooth_steps = check_positive_int(smooth_steps, "digital_watermarking smooth_steps", minimum=0)

    def fit(
        self,
        make_model: ModelFactory,
        images: torch.Tensor,
        labels: torch.Tensor,
        budget: TrainBudget,
        *,
        base_model: nn.Module | None = None,
        trainer: Trainer | None = None,
    ) -> DefendedModel:
        classifier, seconds, reused = classifier_behind(
            make_model, images, labels, budget, base_model=base_model, trainer=trainer
        )
        transform = SaliencyInpainting(classifier, self.threshold, self.erosion, self.dilation, self.smooth_steps)
        views = transform_views(classifier, transform)
        return DefendedModel(
            name=f"digital_watermarking(threshold {self.threshold:g})",
            model=views["naive"],
            views=views,
            train_seconds=seconds,
            info={
                "threshold": self.threshold,
                "erosion": self.erosion,
                "dilation": self.dilation,
                "smooth_steps": self.smooth_steps,
                "reuses_undefended_model": reused,
                "inpainting": "torch onion-peel mean fill + diffusion (approximates OpenCV Telea)",
                "gradients": {
                    "naive": "autograd through the inpainting, mask held fixed",
                    "bpda": "identity through mask-and-inpaint",
                },
            },
        )
