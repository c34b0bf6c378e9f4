"""Built-in defenses plugins; MODULES lists the plugin modules the registry registers, in order."""

MODULES: tuple[str, ...] = (
    "median_filter",
    "derandomized_smoothing",
    "adversarial_training",
    "local_gradient_smoothing",
    "digital_watermarking",
    "patch_cleanser",
)
