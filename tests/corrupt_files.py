"""Damaging files the way disks, copies and killed processes do: truncation and flipped bytes."""

from __future__ import annotations

from pathlib import Path


def truncate(path: Path, fraction: float = 0.5) -> Path:
    """Cut ``path`` to ``fraction`` of its bytes (an interrupted copy or download)."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * fraction)])
    return Path(path)


def flip_bytes(path: Path, n: int = 64, at: float = 0.5) -> Path:
    """Invert ``n`` consecutive bytes starting at ``at`` of the file length (bit rot, a bad sector)."""
    data = bytearray(Path(path).read_bytes())
    start = min(int(len(data) * at), len(data) - n)
    data[start:start + n] = bytes(b ^ 0xFF for b in data[start:start + n])
    Path(path).write_bytes(bytes(data))
    return Path(path)


DAMAGE = {"truncated": truncate, "bit_flipped": flip_bytes}
