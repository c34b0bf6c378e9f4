"""Built-in attacks plugins; MODULES lists the plugin modules the registry registers, in order."""

MODULES: tuple[str, ...] = (
    "pixel",
    "random_pixels",
    "patch",
    "patch_pgd",
    "sparse_pgd",
    "pixel_batched",
    "pixel_exhaustive",
    "pixel_search",
    "pixel_search_grad",
    "patch_rank",
)
