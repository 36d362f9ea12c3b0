"""Wake up when a file is written or replaced: the kernel's inotify (through inotify_simple),
so an agent reports a posture change at once instead of at its next poll.

Without inotify (another kernel, the library missing, a folder that does not exist yet)
`wait` simply sleeps for its timeout: the caller's mtime check then is a slow poll.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Iterable

log = logging.getLogger("crs.filewatch")
NO_NOTIFICATIONS = "no file notifications"     # logged when it falls back to polling


class FileWatch:
    def __init__(self, paths: Iterable[Path]):
        self._ino = None
        self._names: dict[int, set[str]] = {}
        try:
            from inotify_simple import INotify, flags
            ino = INotify()
            mask = flags.CLOSE_WRITE | flags.MOVED_TO | flags.CREATE
            by_dir: dict[Path, set[str]] = {}
            for p in paths:
                p = Path(p).absolute()
                by_dir.setdefault(p.parent, set()).add(p.name)
            for folder, names in by_dir.items():
                self._names[ino.add_watch(str(folder), mask)] = names
            self._ino = ino
        except (ImportError, OSError) as exc:
            log.info("%s (%s): polling instead", NO_NOTIFICATIONS, exc)

    @property
    def notified(self) -> bool:
        return self._ino is not None

    def wait(self, timeout_s: float) -> bool:
        """Block until a watched file was written or replaced (True) or `timeout_s` passed."""
        if self._ino is None:
            time.sleep(timeout_s)
            return False
        deadline = time.monotonic() + timeout_s
        while True:      # other files in the same folder (e.g. a writer's temporary file)
            left = deadline - time.monotonic()
            events = self._ino.read(timeout=max(0, int(left * 1000)))
            if any(e.name in self._names.get(e.wd, ()) for e in events):
                return True
            if left <= 0 or not events:
                return False

    def close(self) -> None:
        if self._ino is not None:
            self._ino.close()
            self._ino = None
