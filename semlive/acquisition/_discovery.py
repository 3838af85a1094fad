"""Discovery: which files of the session folder are complete and ready to read.

File-system events (watchdog: inotify on Linux) are only a wake-up hint; a periodic rescan is
the source of truth, because inotify does not fire on NFS/SMB shares and "created" fires when a
write begins. The readiness ladder for each file:

1. a completion signal — renamed into place, or closed after writing — makes it ready at once;
2. otherwise its size and modification time must stay unchanged over ``settle_polls`` scans;
3. then it is read in full; a read that fails is retried on later scans while the file is
   unchanged, and after ``parse_retries`` failures, once it has also been unchanged for
   ``quarantine_after_s`` (a write stalled on a network share is not a broken file), it is
   quarantined; a change resets this.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from semlive.acquisition._contract import is_ignored

__all__ = ["CONTRACT_FOLDERS", "FileState", "FolderWatcher", "Settler"]

CONTRACT_FOLDERS = ("tiles", "spectra", "standards", "epma")

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class FileState:
    size: int
    mtime_ns: int
    stable: int = 0  # consecutive scans without change
    complete: bool = False  # a completion signal was seen for this size/mtime
    failures: int = 0
    last_error: str = ""
    since: float = field(default_factory=time.monotonic)  # unchanged since (monotonic s)
    done: bool = field(default=False)  # taken (ingested, quarantined or ignored)


class Settler:
    """Tracks sizes and mtimes across scans and says which files are ready to read."""

    def __init__(self, settle_polls: int) -> None:
        self.settle_polls = settle_polls
        self.files: dict[str, FileState] = {}

    def update(self, scan: dict[str, tuple[int, int]], completed: set[str]) -> list[str]:
        """Feed one scan (path → size, mtime_ns); return the paths ready to be read now."""
        ready = []
        for path, (size, mtime) in scan.items():
            state = self.files.get(path)
            if state is None or (state.size, state.mtime_ns) != (size, mtime):
                state = self.files[path] = FileState(size, mtime)
                state.complete = path in completed
            else:
                state.stable += 1
                state.complete = state.complete or path in completed
            if not state.done and (state.complete or state.stable >= self.settle_polls):
                ready.append(path)
        for path in set(self.files) - set(scan):
            del self.files[path]  # vanished (a temp file renamed away, or deleted)
        return ready

    def pending(self) -> list[str]:
        return [p for p, s in self.files.items() if not s.done]


class FolderWatcher:
    """Scans a session folder; optionally listens to file-system events as wake-up hints."""

    def __init__(self, root: Path, observer: str = "auto") -> None:
        self.root = root
        self._hints: queue.SimpleQueue[tuple[str, bool]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._observer: Any = None
        if observer == "auto":
            self._observer = self._start_observer()

    @property
    def uses_events(self) -> bool:
        return self._observer is not None

    def _start_observer(self) -> Any:
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:  # pragma: no cover - watchdog is a dependency
            return None
        watcher = self

        class _Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                path = os.fsdecode(getattr(event, "dest_path", "") or event.src_path)
                if event.is_directory:
                    if event.event_type in ("created", "moved"):
                        watcher._watch_folder(Path(path))
                    return
                watcher._hint(path, event.event_type in ("closed", "moved"))

        observer = Observer()
        self._handler = _Handler()
        self._watched: set[Path] = set()
        try:
            # the root and the contract's folders only, each non-recursively: nothing else
            # (the simulator's _truth, a user's scratch folders) floods the event queue
            observer.schedule(self._handler, str(self.root), recursive=False)
            observer.start()
            self._observer = observer
            for name in CONTRACT_FOLDERS:
                self._watch_folder(self.root / name)
        except OSError as exc:
            logger.warning(
                "file-system events unavailable for %s (%s); polling only", self.root, exc
            )
            return None
        return observer

    def _watch_folder(self, folder: Path) -> None:
        if folder.parent != self.root or folder.name not in CONTRACT_FOLDERS:
            return
        if folder in self._watched or not folder.is_dir() or self._observer is None:
            return
        try:
            self._observer.schedule(self._handler, str(folder), recursive=False)
            self._watched.add(folder)
        except OSError as exc:
            logger.warning(
                "no file-system events for %s (%s); rescans still find its files", folder, exc
            )
        self._wake.set()

    def _hint(self, path: str, complete: bool) -> None:
        try:
            rel = Path(path).relative_to(self.root).as_posix()
        except ValueError:
            return
        if not is_ignored(rel):
            self._hints.put((rel, complete))
        self._wake.set()

    def wait(self, timeout: float) -> None:
        """Sleep until the next scan is due or an event arrives, whichever is first."""
        self._wake.wait(timeout)
        self._wake.clear()

    def completed(self) -> set[str]:
        """Paths with a completion signal (closed after writing, or moved into place)."""
        done: set[str] = set()
        while True:
            try:
                rel, complete = self._hints.get_nowait()
            except queue.Empty:
                return done
            if complete:
                done.add(rel)

    def scan(self) -> dict[str, tuple[int, int]]:
        """Every non-ignored file below the root: relative path → (size, mtime_ns).

        Symbolic links are listed with size −1 and never followed.
        """
        found: dict[str, tuple[int, int]] = {}
        self._scan(self.root, "", found)
        return found

    def _scan(self, folder: Path, prefix: str, found: dict[str, tuple[int, int]]) -> None:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        for entry in entries:
            rel = f"{prefix}{entry.name}"
            if is_ignored(rel):
                continue
            try:
                if entry.is_symlink():  # never followed: it could lead out of the session folder
                    found[rel] = (-1, 0)
                elif entry.is_dir(follow_symlinks=False):
                    self._scan(Path(entry.path), f"{rel}/", found)
                elif entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    found[rel] = (st.st_size, st.st_mtime_ns)
            except OSError:
                continue

    def close(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
