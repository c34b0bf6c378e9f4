"""Built-in metrics plugins; MODULES lists the plugin modules the registry registers, in order."""

MODULES: tuple[str, ...] = (
    "entropy",
    "mutual_information",
    "kl_divergence",
    "psnr",
    "max_norm",
    "joint_entropy",
    "mse",
)
