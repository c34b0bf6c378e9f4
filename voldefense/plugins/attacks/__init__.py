"""Built-in attacks plugins; MODULES lists the plugin modules the registry registers, in order."""

MODULES: tuple[str, ...] = (
    "pixel",
    "random_pixels",
    "patch",
    "patch_pgd",
    "sparse_pgd",
    "pixel_batched",
    "pixel_exhaustive",
    "patch_rank",
)
