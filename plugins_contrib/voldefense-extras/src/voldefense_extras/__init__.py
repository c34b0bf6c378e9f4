"""voldefense-extras: example third-party plugins for voldefense, one of each kind.

The entry point ``voldefense_extras.plugin`` is all voldefense sees; the components live in their own modules
and are imported only when a spec's factory runs, so listing plugins stays cheap.
"""

__version__ = "0.1.0"
