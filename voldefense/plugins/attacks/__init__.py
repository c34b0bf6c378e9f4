"""Built-in attacks plugins; MODULES lists the plugin modules the registry registers, in order."""

MODULES: tuple[str, ...] = ()
