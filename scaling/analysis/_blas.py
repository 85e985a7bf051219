"""OpenBLAS thread limit for the optimizer loops (a no-op where OpenBLAS is not loaded)."""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def _blas_single_thread() -> Iterator[None]:
    """Run the block with OpenBLAS limited to one thread, restoring the old count after.

    The optimizer's vectors have 5 entries, so BLAS threads never help; but scipy's L-BFGS-B
    calls OpenBLAS, whose threads spin-wait, and on a busy 2-core machine that made fits 10-15x
    slower (measured: 1,000 bootstrap refits 3.5 s alone, 40-55 s beside another busy process).
    Same idea as threadpoolctl, without the dependency; a no-op where the library is not found.
    """
    restore: list[tuple[Callable[[int], None], int]] = []
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
        for path in sorted(paths):
            lib = ctypes.CDLL(path)
            for suffix in ("", "64_"):
                for prefix in ("scipy_openblas", "openblas"):
                    getter = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                    setter = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                    if getter is not None and setter is not None:
                        restore.append((setter, int(getter())))
                        setter(1)
    except OSError:
        pass
    try:
        yield
    finally:
        for setter, n_threads in restore:
            setter(n_threads)
