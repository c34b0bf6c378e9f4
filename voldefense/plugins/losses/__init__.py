"""Built-in losses plugins; MODULES lists the plugin modules the registry registers, in order."""

MODULES: tuple[str, ...] = ()
