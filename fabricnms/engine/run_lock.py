"""One writer per output folder: an exclusive lock held for the whole run.

``predict`` (a new run, ``--out`` or ``--resume``) and ``train`` (a new or resumed run) hold
:class:`RunLock` on their folder while they write, so two runs never write one folder at once:
the second gets a one-line :class:`~fabricnms.errors.FabricError` naming the folder and the
holder's pid. The lock is ``fcntl.flock`` on ``<folder>/.fabricnms.lock``, which the kernel
releases when the holder dies, so the lock of a killed run (``kill -9``) is taken over by the
next run without any clean-up; the file's pid is only information for the message.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path
from types import TracebackType

from fabricnms.errors import FabricError

LOCK_NAME = ".fabricnms.lock"


def make_out_dir(path: str | Path, option: str = "--out") -> Path:
    """Create the folder ``path`` (and its parents); a one-line error when it cannot be (a
    path under a regular file, a read-only or virtual file system, no permission)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise FabricError(f"{option} {path}: exists and is not a folder") from None
    except OSError as exc:
        raise FabricError(
            f"{option} {path}: cannot create the folder ({exc.strerror or exc})"
        ) from None
    return path


class RunLock:
    """Exclusive lock on the folder ``folder`` (created if missing); use as a context manager.

    Raises :class:`FabricError` when another live process holds it, naming the folder and pid.
    """

    def __init__(self, folder: str | Path, option: str = "--out") -> None:
        self._fd: int | None = None
        self.folder = make_out_dir(folder, option)
        self.path = self.folder / LOCK_NAME

    def acquire(self) -> RunLock:
        """Take the lock (idempotent within one holder)."""
        while self._fd is None:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise FabricError(
                    f"{self.folder}: cannot create the run lock ({exc.strerror or exc})"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _read_pid(fd)
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise FabricError(
                        f"{self.folder}: cannot lock the folder ({exc.strerror or exc})"
                    ) from None
                who = f"process {holder}" if holder else "another process"
                raise FabricError(
                    f"{self.folder}: in use by another fabricnms run ({who}); wait for it to "
                    "finish or use another output folder"
                ) from None
            if not _same_file(fd, self.path):  # unlinked by a releasing holder: retry
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock and remove the lock file."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(self._fd)
        self._fd = None

    def __del__(self) -> None:
        self.release()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False
