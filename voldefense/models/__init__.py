"""Backbones in 2D and 3D, the generic 2D→3D converter, per-patch heads, aggregation and the defended
classifier.

Submodules are imported on use (they import torch): `factory.build_model`, `convert.convert_to_3d`,
`patchwise.Patchwise` (g at depth kernel 1: f run on each patch, no conversion),
`defended.DefendedClassifier`, `aggregation.aggregate`, `losses.PatchAggregateLoss`, and one module per
architecture (`vgg`, `resnet`, `inception`, `efficientnet`). See docs/models.md.
"""
