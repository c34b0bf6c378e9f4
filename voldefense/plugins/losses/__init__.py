"""Built-in losses plugins; MODULES lists the plugin modules the registry registers, in order."""

MODULES: tuple[str, ...] = ("cross_entropy", "patch_aggregate")
