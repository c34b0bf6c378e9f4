"""A restricted unpickler for dataset files in pickle format (the official CIFAR python archives).

`pickle.load` on an untrusted file runs whatever callable the file names, so a doctored "dataset" downloaded
from a mirror could execute code. Only `find_class` can bring a callable into an unpickling (GLOBAL,
STACK_GLOBAL, INST, OBJ and the extension-registry opcodes all go through it), so allowing exactly the globals
needed to rebuild a numpy array closes that door; everything else (dicts, lists, str, bytes, ints) needs no
global. Persistent ids are refused too (the base class does that when `persistent_load` is not defined).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from voldefense.errors import DataError


def _numpy_global(module: str, name: str) -> Any:
    # numpy 2 moved `numpy.core` to `numpy._core`; old files (CIFAR's were written by Python 2 / numpy 1) name
    # the old module. Resolve by attribute on the already imported numpy, never by importing a module string.
    core = getattr(np, "_core", None) or np.core
    return getattr(getattr(core, module), name)


# (module, name) as written in the file -> a thunk giving the object. Nothing else can be named.
_ALLOWED = {
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): lambda: _numpy_global("multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): lambda: _numpy_global("multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"): lambda: _numpy_global("numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"): lambda: _numpy_global("numeric", "_frombuffer"),
    # Python 3 pickles bytes at protocol 2 as _codecs.encode(str, "latin1"); it only converts text to bytes.
    ("_codecs", "encode"): lambda: _codecs_encode,
}


def _codecs_encode(text: str, encoding: str = "utf-8") -> bytes:
    # Narrower than the real `_codecs.encode`: text codecs only, so no codec machinery can be reached.
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8", "ascii"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode(encoding)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays; any other global raises `pickle.UnpicklingError`."""

    def find_class(self, module: str, name: str) -> Any:
        factory = _ALLOWED.get((module, name))
        if factory is None:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a dataset file")
        return factory()


def load_pickle(stream: BinaryIO, *, source: str | Path) -> Any:
    """Load one pickled object from `stream` with `RestrictedUnpickler`.

    Python 2 pickles (the official CIFAR files) store text as byte strings; `latin1` decodes them losslessly,
    which is also what numpy needs to rebuild arrays pickled by Python 2. Any failure, including a refused
    global, is a `DataError` naming `source`.
    """
    try:
        return RestrictedUnpickler(stream, encoding="latin1").load()
    except pickle.UnpicklingError as err:
        raise DataError(
            f"{source}: not a valid dataset pickle ({err}); delete it and download the official file again"
        ) from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, OverflowError) as err:
        raise DataError(
            f"{source}: corrupt or truncated pickle ({type(err).__name__}: {err}); "
            f"delete it and download the official file again"
        ) from None
