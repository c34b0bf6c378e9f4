"""The quickstart experiment shrunk to seconds on CPU, for the tests that run it end to end.

Not a test module: test modules import it by its bare name (tests/ is on sys.path because tests/conftest.py is
imported rootdir-style, without packages), so its basename must stay unique in the tests tree.
"""

from __future__ import annotations

from pathlib import Path

QUICKSTART = Path(__file__).parents[1] / "configs" / "quickstart.yaml"


def tiny_overrides(*, train_size: int, test_size: int, val_size: int, epochs: int, batch_size: int) -> list[str]:
    """`--set` overrides for a tiny synthetic-data run of QUICKSTART: the sizes given and a 1/16-width model.

    The attacks stay those of the config; callers append their own (smaller) attack overrides.
    """
    return [
        f"data.options.train_size={train_size}",
        f"data.options.test_size={test_size}",
        f"data.val_size={val_size}",
        f"training.epochs={epochs}",
        f"training.batch_size={batch_size}",
        "model.width=0.0625",
    ]
