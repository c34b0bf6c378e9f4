"""Built-in plugins: each subpackage lists its plugin modules in MODULES."""
