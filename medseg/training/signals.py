"""Graceful SIGINT/SIGTERM: the first signal asks the training loop to stop at the next iteration boundary (it then
writes a snapshot); a second one restores the default behaviour and is re-delivered (immediate stop).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType, TracebackType
from typing import Any

logger = logging.getLogger(__name__)

HANDLED = (signal.SIGINT, signal.SIGTERM)


def _ignore_child_exit(signum: int, frame: FrameType | None) -> None:
    """SIGCHLD while stopping: a worker's end is noticed where the loop next fetches a batch, not here."""


class TrainingInterrupted(Exception):
    """Raised by the loop after it saved a snapshot because of a signal."""

    def __init__(self, signum: int, snapshot: str | None) -> None:
        super().__init__(f"training interrupted by {signal.Signals(signum).name}; snapshot: {snapshot}")
        self.signum = signum
        self.snapshot = snapshot


class StopRequest:
    """Context manager installing the handlers (main thread only; elsewhere it is inert)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:  # second signal: give up gracefully stopping
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
            os.kill(os.getpid(), signum)
            return
        self.signum = signum
        if hasattr(signal, "SIGCHLD"):
            # A signal to the process group ends the DataLoader workers too, and the SIGCHLD handler of torch would
            # raise that anywhere, e.g. inside a checkpoint write: notice their end at the next batch fetch instead.
            # A Python no-op, not SIG_DFL: a SIGCHLD that arrived before this line is still pending for the
            # interpreter, which raises "OSError: Signal 17 ignored due to race condition" if the handler it finds
            # then is no longer a Python function.
            previous = signal.getsignal(signal.SIGCHLD)
            if previous is not None:
                self._previous.setdefault(signal.SIGCHLD, previous)
            signal.signal(signal.SIGCHLD, _ignore_child_exit)
        logger.warning("received %s: stopping after the current iteration and writing a snapshot "
                       "(send it again to stop immediately)", signal.Signals(signum).name)

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for signum in HANDLED:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if hasattr(signal, "SIGCHLD") and self.requested:
            # After a stop the loader's iterator is torn down while the ended workers' SIGCHLDs still arrive; with
            # torch's handler back they would print a "worker killed by signal" traceback after the clean stop. The
            # no-op stays (torch then notices a dead worker by polling, as without its handler).
            self._previous.pop(signal.SIGCHLD, None)
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
