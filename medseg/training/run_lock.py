"""Claiming a run folder: one training at a time, and no silent overwrite of an earlier run's results.

The lock is ``<run>/train.lock``, created with ``O_CREAT | O_EXCL`` (atomic) and holding the owner's pid, host, start
time and command line as JSON; it is removed when the run ends. A lock left by a process that no longer runs (on this
host: its pid is gone, e.g. after ``kill -9``) is stale and taken over with a warning. A lock of another host cannot
be checked and is refused with a message that says how to remove it. On POSIX systems the take-over is serialised by
an ``flock`` on the run folder, so two trainings racing for a stale lock cannot both win.

The folders that :meth:`RunLock.acquire` had to create are removed again by :meth:`RunLock.release` if they are still
empty then (a run refused after the claim leaves no empty ``train_.../<config>/<cval>/`` tree behind).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

LOCK_NAME = "train.lock"
#: A lock file without readable owner information (its writer was killed between create and write) is stale after
#: this many seconds.
UNREADABLE_LOCK_GRACE_S = 60.0


class RunFolderBusy(OSError):
    """Another live training holds the run folder."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    except OSError:
        return True
    return True


@contextlib.contextmanager
def _folder_mutex(folder: Path) -> Iterator[None]:
    """Serialise lock take-overs between processes (POSIX ``flock`` on the folder; a no-op elsewhere)."""
    if fcntl is None:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


class RunLock:
    """Exclusive claim of one run folder by one training process.

    Args:
        run_dir: the run folder (created if missing).
        name: the lock file's name in it.
        folder_kind, holder: words of the busy message ("expected a <folder_kind> that no other <holder> uses").
    """

    def __init__(self, run_dir: str | os.PathLike, name: str = LOCK_NAME, folder_kind: str = "run folder",
                 holder: str = "training") -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / name
        self.folder_kind, self.holder = folder_kind, holder
        self.held = False
        self._created: list[Path] = []  # folders that acquire() created, deepest first

    def owner(self) -> dict[str, Any] | None:
        """The JSON content of the lock file (None if missing or unreadable)."""
        try:
            info = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError, UnicodeDecodeError):
            return None
        return info if isinstance(info, dict) else None

    def _is_stale(self, owner: dict[str, Any] | None) -> bool:
        if owner is None or not isinstance(owner.get("pid"), int):
            try:
                age = time.time() - self.path.stat().st_mtime
            except FileNotFoundError:
                return True
            return age > UNREADABLE_LOCK_GRACE_S
        if owner.get("host") != socket.gethostname():
            return False  # cannot check another machine's processes
        return owner["pid"] != os.getpid() and not _pid_alive(owner["pid"])

    def acquire(self) -> RunLock:
        """Take the lock.

        Raises:
            RunFolderBusy: naming the lock file, the owner's pid, host and start time.
            PermissionError: if the run folder cannot be created or written.
        """
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                "command": " ".join(sys.argv)}
        attempts = 3
        try:
            while True:
                self._make_run_dir()
                try:
                    return self._create_lock_file(info)
                except FileNotFoundError as err:  # the folder vanished (an ending claim removed it empty): again
                    attempts -= 1
                    if not attempts:
                        raise PermissionError(f"cannot create the lock file {self.path}: {err}") from err
        except BaseException:
            self._remove_created_folders()
            raise

    def _create_lock_file(self, info: dict[str, Any]) -> RunLock:
        with _folder_mutex(self.run_dir):
            for _ in range(2):
                try:
                    fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    owner = self.owner()
                    if not self._is_stale(owner):
                        raise RunFolderBusy(self._busy_message(owner)) from None
                    logger.warning("%s: taking over the stale lock of pid %s on %s (that process is gone)", self.path,
                                   (owner or {}).get("pid", "?"), (owner or {}).get("host", "?"))
                    with contextlib.suppress(FileNotFoundError):
                        self.path.unlink()
                    continue
                except FileNotFoundError:
                    raise
                except OSError as err:
                    raise PermissionError(f"cannot create the lock file {self.path}: {err}") from err
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    json.dump(info, handle)
                self.held = True
                return self
        raise RunFolderBusy(self._busy_message(self.owner()))

    def _make_run_dir(self) -> None:
        missing = []
        for folder in (self.run_dir, *self.run_dir.parents):
            if folder.exists():
                break
            missing.append(folder)
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise PermissionError(f"cannot create run folder {self.run_dir}: {err}") from err
        self._created = missing + [f for f in self._created if f not in missing]

    def _remove_created_folders(self) -> None:
        """Remove the folders :meth:`acquire` created that are still empty (deepest first; a folder that another
        process has meanwhile filled stays)."""
        for folder in self._created:
            try:
                folder.rmdir()
            except OSError:  # not empty (the run wrote files, or another claim uses it) or already gone
                break
        self._created = []

    def _busy_message(self, owner: dict[str, Any] | None) -> str:
        owner = owner or {}
        article = "an" if self.folder_kind[:1] in "aeiou" else "a"
        return (f"{self.run_dir}: expected {article} {self.folder_kind} that no other {self.holder} uses, got the lock "
                f"{self.path} of pid "
                f"{owner.get('pid', '?')} on host {owner.get('host', '?')} (started {owner.get('started', '?')}); "
                f"wait for that run to end, or delete {self.path} if it is no longer running")

    def release(self) -> None:
        """Remove the lock file if this process holds it, then the folders :meth:`acquire` created if they are
        empty."""
        if self.held:
            owner = self.owner()
            if owner is None or owner.get("pid") == os.getpid():
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
            self.held = False
        self._remove_created_folders()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
