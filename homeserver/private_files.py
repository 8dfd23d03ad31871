"""Files and directories only this server's user may read: the data directory (0700), the
SQLite database with its -wal and -shm files, and the key files (0600).

Modes are set explicitly after creating, never left to the umask (which may be 0022 and make
them world-readable, or so strict that the owner could not write). At start-up an existing file
that others may read is tightened to 0600 with a warning; an existing directory is only warned
about, since it may be shared (a home directory, /etc) and is not ours to change.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

logger = logging.getLogger(__name__)

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def ensure_private_dir(path: Path, *, warn_if_open: bool = False) -> None:
    """Create ``path`` (and missing parents) as 0700 directories; with ``warn_if_open``, warn
    about an existing one that group or others may enter."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:
            continue  # made meanwhile by someone else: treated as existing
        os.chmod(directory, PRIVATE_DIR_MODE)
    if not missing and warn_if_open:
        _warn_if_open(path)


def _warn_if_open(directory: Path) -> None:
    try:
        mode = stat.S_IMODE(directory.stat().st_mode)
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning(
            "directory %s is accessible by other users (mode %04o); consider: chmod 700 %s",
            directory,
            mode,
            directory,
        )


def create_private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 unless it exists (then see :func:`tighten`)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        tighten(path)
        return
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
    finally:
        os.close(fd)


def tighten(path: Path) -> None:
    """Make an existing file others may read 0600 (its owner keeps read and write), warning;
    a missing file is left alone."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        try:
            os.chmod(path, PRIVATE_FILE_MODE)
        except OSError as e:  # not our file: say so, and go on
            logger.warning(
                "%s is accessible by other users (mode %04o) and cannot be changed (%s);"
                " run: chmod 600 %s",
                path,
                mode,
                e.strerror,
                path,
            )
            return
        logger.warning(
            "%s was accessible by other users (mode %04o); its mode is now %04o",
            path,
            mode,
            PRIVATE_FILE_MODE,
        )
