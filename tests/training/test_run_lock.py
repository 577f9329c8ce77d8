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
