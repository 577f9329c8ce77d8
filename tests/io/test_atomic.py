"""Atomic writers: nothing half-written is ever left at the final path."""

from __future__ import annotations

import os

import pytest
import torch

from medseg.io.atomic import atomic_open, atomic_output_path, atomic_torch_save, atomic_write_text, ensure_writable_dir


def test_atomic_output_path_renames_on_success(tmp_path):
    target = tmp_path / "sub" / "vol.nii.gz"
    with atomic_output_path(target) as tmp:
        assert tmp.name.endswith(".nii.gz") and tmp.parent == target.parent and not target.exists()
        tmp.write_bytes(b"data")
    assert target.read_bytes() == b"data" and os.listdir(target.parent) == ["vol.nii.gz"]


def test_atomic_output_path_cleans_up_on_error(tmp_path):
    target = tmp_path / "report.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_output_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["report.csv"]


def test_atomic_text_open_and_torch_save(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "hello")
    assert (tmp_path / "a.txt").read_text() == "hello"
    with atomic_open(tmp_path / "b.bin", "wb") as handle:
        handle.write(b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    with pytest.raises(ValueError, match="for writing"), atomic_open(tmp_path / "c.txt", "r"):
        pass
    atomic_torch_save({"w": torch.arange(3)}, tmp_path / "ckpt.pth")
    loaded = torch.load(tmp_path / "ckpt.pth", map_location="cpu", weights_only=True)
    assert torch.equal(loaded["w"], torch.arange(3))


def test_ensure_writable_dir_errors_name_the_folder(tmp_path, monkeypatch):
    assert ensure_writable_dir(tmp_path / "x" / "y").is_dir()
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(PermissionError, match="cannot create output folder .*file"):
        ensure_writable_dir(blocker)
    with pytest.raises(PermissionError):
        atomic_write_text(blocker / "out.txt", "x")
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(PermissionError, match="is not writable"):
        ensure_writable_dir(tmp_path / "x")
