"""Atomic file writing: nothing half-written is ever left at a final path.

Every writer in medseg (NIfTI volumes, checkpoints, CSV reports, PNG figures) goes through these helpers: the data is
written to a temporary file in the destination folder and then renamed over the final name (``os.replace`` is atomic
on POSIX and Windows when source and destination are on the same file system).
"""

from __future__ import annotations

import contextlib
import filecmp
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike


def _default_file_mode() -> int:
    """Permissions a plain ``open(path, 'w')`` would give (``mkstemp`` creates files readable by the owner only)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _split_suffix(name: str) -> tuple[str, str]:
    """Split a file name into stem and full suffix, keeping double suffixes such as ``.nii.gz``."""
    for double in (".nii.gz", ".tar.gz"):
        if name.endswith(double):
            return name[: -len(double)], double
    stem, dot, ext = name.rpartition(".")
    return (stem, dot + ext) if dot and stem else (name, "")


def ensure_writable_dir(directory: PathLike) -> Path:
    """Create ``directory`` (and parents) and check that files can be created in it.

    Raises:
        PermissionError: naming the folder, if it cannot be created or written.
    """
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PermissionError(f"cannot create output folder {directory}: {err}") from err
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(f"output folder {directory} is not writable")
    return directory


@contextlib.contextmanager
def atomic_output_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed to ``path``, on error it is removed.

    The temporary name keeps the suffix of ``path`` (``.nii.gz``, ``.csv``, ``.png`` ...) so that libraries which
    choose the format from the file name (SimpleITK, matplotlib, pandas) still write the right format.
    """
    path = Path(path)
    ensure_writable_dir(path.parent)
    stem, suffix = _split_suffix(path.name)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".tmp{suffix}", dir=path.parent)
    except OSError as err:  # name the file asked for, not the temporary one
        raise type(err)(err.errno, f"cannot write {path}: {err.strerror or err}") from err
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, _default_file_mode())
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if err.errno is None or str(path) in str(err):
            raise
        # e.g. "[Errno 28] No space left on device" from a copy or a library names no file: name the one asked for
        raise OSError(err.errno, f"cannot write {path}: {err.strerror or err}{free_space_note(path)}") from err
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "w", **kwargs: Any) -> Iterator[Any]:
    """Open a temporary file for writing that replaces ``path`` only when the block finishes without error."""
    if not any(flag in mode for flag in "wx"):
        raise ValueError(f"atomic_open is for writing; got mode {mode!r}")
    with atomic_output_path(path) as tmp, open(tmp, mode.replace("x", "w"), **kwargs) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())
        written = getattr(handle, "buffer", handle).tell()  # bytes written (text handles: their byte buffer)
        on_disk = os.fstat(handle.fileno()).st_size
        if on_disk != written:
            raise OSError(f"cannot write {path}: {on_disk} of {written} bytes reached the disk{free_space_note(tmp)}")


def free_space_note(path: PathLike) -> str:
    """``"; N MiB free in <folder> (is the disk full?)"`` for the folder of ``path`` (empty if it cannot be told)."""
    folder = Path(path).parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return ""
    return f"; {free / 2**20:.1f} MiB free in {folder} (is the disk full?)"


def copy_file_verified(source: PathLike, path: PathLike) -> Path:
    """Copy ``source`` to ``path`` atomically; the copy is compared byte for byte with ``source`` before it is
    renamed into place.

    Raises:
        OSError: naming ``path`` if the copy does not read back identical (e.g. a full disk).
    """
    path = Path(path)
    with atomic_output_path(path) as tmp:
        shutil.copyfile(source, tmp)
        if not filecmp.cmp(source, tmp, shallow=False):
            raise OSError(f"cannot write {path}: the copy of {source} does not read back identical "
                          f"({tmp.stat().st_size} of {Path(source).stat().st_size} bytes){free_space_note(tmp)}")
    return path


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def atomic_write_text_if_changed(path: PathLike, text: str) -> bool:
    """Write ``text`` (UTF-8, line endings as given) to ``path`` atomically unless the file already holds exactly it
    (its modification time, which data fingerprints use, then stays). Returns whether it wrote."""
    path = Path(path)
    data = text.encode("utf-8")
    try:
        if path.is_file() and path.read_bytes() == data:
            return False
    except OSError:
        pass  # unreadable: rewrite it
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return True


def atomic_torch_save(obj: Any, path: PathLike) -> None:
    """``torch.save`` to ``path`` atomically (a crash or kill never leaves a truncated checkpoint)."""
    with atomic_open(path, "wb") as handle:
        torch.save(obj, handle)


#: Name of a temporary file made by :func:`atomic_output_path`: ``.<stem>.<8 random chars>.tmp<suffix>``.
TEMP_FILE_PATTERN = re.compile(r"^\.(?P<stem>.+)\.[a-z0-9_]{8}\.tmp(?P<suffix>(\.[A-Za-z0-9]+)*)$")
#: Temporary files older than this were left by a killed process (every medseg write takes seconds at most).
STALE_TEMP_AGE_S = 15 * 60


def remove_stale_temp_files(directory: PathLike, older_than_s: float = STALE_TEMP_AGE_S,
                            recursive: bool = False) -> list[Path]:
    """Delete temporary files of :func:`atomic_output_path` that a killed process (``kill -9``) left behind.

    Only files whose name matches :data:`TEMP_FILE_PATTERN` and that were last modified more than ``older_than_s``
    seconds ago are removed, so a write in progress in another process is never touched (``older_than_s=0`` is for
    folders this process holds a lock on). Missing folders and files that vanish meanwhile are ignored.

    Returns:
        The removed paths.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    candidates = directory.rglob(".*") if recursive else directory.glob(".*")
    now = time.time()
    removed = []
    for path in candidates:
        if not TEMP_FILE_PATTERN.match(path.name):
            continue
        try:
            if not path.is_file() or path.is_symlink() or now - path.stat().st_mtime < older_than_s:
                continue
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
    if removed:
        logger.info("removed %d stale temporary file(s) in %s (left by an interrupted run)", len(removed), directory)
    return removed
