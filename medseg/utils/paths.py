"""Guards for path components taken from configs and command lines, so that no value can write outside its folder."""

from __future__ import annotations

import os
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
