"""Guards for path components taken from configs and command lines, so that no value can write outside its folder."""

from __future__ import annotations

import os
import stat
from pathlib import Path

PathLike = str | os.PathLike


def check_name(value: object, what: str) -> str:
    """``value`` as one file/folder name: a non-empty string without separators that is not ``.`` or ``..``.

    Args:
        value: the name (e.g. a subject id, a dataset name).
        what: the config key or command-line flag it came from (used in the message).

    Raises:
        ValueError: naming ``what`` and the offending value.
    """
    separators = {"/", "\\", os.sep} | ({os.altsep} if os.altsep else set())
    if (not isinstance(value, str) or value.strip() in ("", ".", "..") or any(s in value for s in separators)
            or "\0" in value):
        raise ValueError(f"{what}: expected a single file or folder name (no '/', '\\', '..'), got {value!r}")
    return value


def check_inside(path: PathLike, root: PathLike, what: str) -> Path:
    """``path`` if it stays inside ``root`` once both are resolved (symlinks and ``..`` followed).

    Raises:
        ValueError: naming ``what``, if ``path`` leads outside ``root``.
    """
    path, root = Path(path), Path(root)
    resolved, resolved_root = path.resolve(), root.resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise ValueError(f"{what}: expected a location inside {root}, got {path} (resolves to {resolved})")
    return path


def path_kind(path: PathLike) -> str:
    """What ``path`` is, in words: ``"missing"``, ``"a regular file"``, ``"a folder"``, ``"a FIFO"``, ``"a socket"``,
    ``"a character device"``, ``"a block device"`` or ``"a broken symbolic link"`` (links are followed)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "a broken symbolic link" if path.is_symlink() else "missing"
    except OSError as err:
        return f"unreadable ({err.strerror or err})"
    for test, kind in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return kind
    return "not a regular file"


def check_output_folder(value: PathLike, flag: str) -> Path:
    """An output folder given on a command line: a non-empty path that is a folder or does not exist yet.

    Raises:
        ValueError: naming ``flag``, for an empty value or a path that exists but is no folder (a file, a FIFO ...).
    """
    if not str(value).strip():
        raise ValueError(f"{flag}: expected a folder path, got an empty string")
    kind = path_kind(value)
    if kind not in ("missing", "a folder"):
        raise ValueError(f"{flag}: expected a folder (or a path to create one), got {value}, which is {kind}")
    return Path(value)


def check_output_file(value: PathLike, flag: str, suffixes: tuple[str, ...]) -> Path:
    """An output file given on a command line: non-empty, with one of ``suffixes``, a regular file or not existing.

    Raises:
        ValueError: naming ``flag`` and what is wrong.
    """
    text = str(value)
    if not text.strip():
        raise ValueError(f"{flag}: expected a file path, got an empty string")
    if not text.lower().endswith(suffixes):
        raise ValueError(f"{flag}: expected a file name ending in {' or '.join(suffixes)}, got {text}")
    kind = path_kind(value)
    if kind not in ("missing", "a regular file"):
        raise ValueError(f"{flag}: {text} is {kind}, not a regular file; expected a file to write")
    return Path(value)
