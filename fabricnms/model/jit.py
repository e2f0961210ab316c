"""Numba compilation of the inference kernels (:mod:`fabricnms.model.dnms_fast` and the merge).

:func:`kernel` is ``numba.njit(cache=True)``: the machine code is compiled on the first call of
each argument-type signature and stored next to the module (or, where the package directory is
read-only, in numba's user-wide cache directory), so later processes only load it. Where no
cache location is writable at all, the kernels are compiled in memory on each first call
instead (one warning). ``error_model="numpy"``: a division by zero gives ``inf``/``nan`` as in
torch rather than raising, and the kernels need no per-division check.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import numba

F = TypeVar("F", bound=Callable[..., Any])

_UNCACHED_WARNED = False


def kernel(func: F) -> F:
    """``numba.njit`` with an on-disk cache where one is writable (see the module docstring)."""
    global _UNCACHED_WARNED
    try:
        return numba.njit(cache=True, error_model="numpy")(func)  # type: ignore[return-value]
    except RuntimeError as err:  # numba: "cannot cache function ...: no locator available"
        if not _UNCACHED_WARNED:
            _UNCACHED_WARNED = True
            warnings.warn(
                f"numba kernels are compiled on each run (no writable cache: {err}); set "
                "NUMBA_CACHE_DIR to a writable directory to keep them",
                RuntimeWarning,
                stacklevel=2,
            )
        return numba.njit(error_model="numpy")(func)  # type: ignore[return-value]


@kernel
def copy_into(dst: Any, src: Any) -> None:
    """``dst[:] = src`` for two 1-D arrays of one length, element by element: numpy-style
    array assignment compiles several times slower (its broadcasting checks build strings)."""
    for i in range(dst.shape[0]):
        dst[i] = src[i]
