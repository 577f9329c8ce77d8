"""The run-folder lock: one training per folder, stale locks of dead processes are taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medseg.training.run_lock import LOCK_NAME, RunFolderBusy, RunLock

REPO_ROOT = Path(__file__).resolve().parents[2]


def write_lock(run_dir: Path, pid: int, host: str | None = None) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    path.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(), "started": "earlier"}))
    return path


def test_lock_is_exclusive_across_processes(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from medseg.training.run_lock import RunLock; "
         f"lock = RunLock({str(tmp_path)!r}).acquire(); print('held', flush=True); time.sleep(60)"],
        cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderBusy, match=rf"lock .*{LOCK_NAME} of pid {holder.pid} on host"):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    lock = RunLock(tmp_path).acquire()  # the holder was killed (-9): its lock is stale now
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / LOCK_NAME).exists()


def test_lock_of_another_host_or_unreadable_is_respected(tmp_path: Path) -> None:
    write_lock(tmp_path / "a", 1, host="some-other-machine")
    with pytest.raises(RunFolderBusy, match="some-other-machine"):
        RunLock(tmp_path / "a").acquire()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / LOCK_NAME).write_text("")  # its writer may be writing right now
    with pytest.raises(RunFolderBusy):
        RunLock(tmp_path / "b").acquire()
    old = time.time() - 3600
    os.utime(tmp_path / "b" / LOCK_NAME, (old, old))
    with RunLock(tmp_path / "b") as lock:  # an hour-old unreadable lock is stale
        assert lock.held


def test_release_removes_the_folders_the_claim_created_while_empty(tmp_path: Path) -> None:
    save_dir = tmp_path / "saved"
    save_dir.mkdir()
    run_dir = save_dir / "train_ACDC_10_n_cls_4" / "ACDC" / "cooperative_training" / "0"
    with RunLock(run_dir) as lock:
        assert lock.held and (run_dir / LOCK_NAME).is_file()
    assert list(save_dir.iterdir()) == []  # the rejected run leaves no empty tree; save_dir existed before: kept
    with RunLock(run_dir):
        (run_dir / "config.json").write_text("{}")  # the run wrote something: nothing is removed
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json"]


def test_refused_claim_removes_nothing_it_did_not_create(tmp_path: Path) -> None:
    write_lock(tmp_path / "run", 1, host="some-other-machine")
    with pytest.raises(RunFolderBusy):
        RunLock(tmp_path / "run").acquire()
    assert (tmp_path / "run" / LOCK_NAME).is_file()  # the other host's lock and its folder stay


def test_claim_made_again_when_the_folder_vanishes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another claim that ends may remove the empty folder between our mkdir and our lock file: try again."""
    lock = RunLock(tmp_path / "a" / "0")
    original = RunLock._create_lock_file
    calls = []

    def vanished_once(self: RunLock, info: dict) -> RunLock:
        calls.append(1)
        if len(calls) == 1:
            (tmp_path / "a" / "0").rmdir()
            raise FileNotFoundError(2, "No such file or directory", str(self.path))
        return original(self, info)

    monkeypatch.setattr(RunLock, "_create_lock_file", vanished_once)
    assert lock.acquire().held and len(calls) == 2
    lock.release()
    assert list(tmp_path.iterdir()) == []
