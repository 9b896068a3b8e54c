"""Load OpenBLAS before MLX so MLX's CPU backend uses it instead of its bundled reference BLAS.

Measured here (2 cores, docs/bench/blas.json): a dense float32 SmolLM2-135M read a 440-token prompt at 115 tok/s
with OpenBLAS loaded first, versus 13.4 tok/s without (under load; scripts/measure_blas.py). Loading it after ``import mlx.core`` has no
effect, so this must run first; it is called from the entry points, never at import time.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from pathlib import Path

__all__ = ["preload_openblas", "blas_status"]

log = logging.getLogger(__name__)

_CANDIDATES = (
    "libopenblas.so.0",
    "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
)
_state: dict[str, str | None] = {"library": None, "reason": "not attempted"}


def preload_openblas(mode: str = "auto") -> str | None:
    """Load OpenBLAS globally (mode ``auto``/``openblas``); return its path, or None for the bundled BLAS."""
    if _state["reason"] != "not attempted":
        return _state["library"]
    if sys.platform != "linux":
        _state["reason"] = "not Linux: MLX uses Metal/Accelerate"
        return None
    if mode == "bundled":
        _state["reason"] = "disabled by setting (blas = 'bundled')"
        return None
    if "mlx.core" in sys.modules:
        _state["reason"] = "mlx.core was imported before OpenBLAS could be loaded"
        log.warning("OpenBLAS not used: %s", _state["reason"])
        return None
    found = ctypes.util.find_library("openblas")
    for name in ((found,) if found else ()) + _CANDIDATES:
        try:
            ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
        except OSError:
            continue
        _state["library"] = str(name)
        _state["reason"] = "loaded before mlx.core"
        log.debug("OpenBLAS loaded from %s", name)
        return str(name)
    _state["reason"] = "libopenblas.so.0 not found (Debian: apt-get install libopenblas0-pthread)"
    if mode == "openblas":
        log.warning("OpenBLAS requested but %s", _state["reason"])
    return None


def blas_status() -> dict[str, str | None]:
    """Which BLAS MLX's CPU backend uses in this process, and why."""
    return {"library": _state["library"], "reason": _state["reason"],
            "debian_package_present": str(Path(_CANDIDATES[1]).exists() or Path(_CANDIDATES[2]).exists())}
