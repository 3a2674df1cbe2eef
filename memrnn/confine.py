"""Paths inside a root folder (a run directory, the book folder) that never lead out of it.

A symbolic link below the root, a run's ``checkpoints`` folder pointing elsewhere say, would make a
read, a write or a clean-up reach files that are not the root's own. So every path memrnn uses below
such a root is checked component by component (no link anywhere below the root, a folder wherever a
folder is expected), and a file is read only after checking, on the open file itself, that it is a
regular file, opened without following a link and without blocking (a FIFO would hang the read).
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path, PurePosixPath

_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"))


def kind(mode: int) -> str | None:
    """What a file of this mode is, when it is not a regular file."""
    return next((name for test, name in _KINDS if test(mode)), None) if not stat.S_ISREG(mode) else None


def plain_name(name) -> bool:
    """A file or folder name of its own: text with no separator, not hidden, not '.' or '..'."""
    return isinstance(name, str) and bool(name) and "/" not in name and "\\" not in name and not name.startswith(".") \
        and "\0" not in name


def inside(root: Path, relative: str | Path) -> Path:
    """``root / relative`` after checking that ``relative`` is a relative path with no '.' or '..' part
    and that no part of it that exists is a symbolic link, nor anything but a folder above the last."""
    text = str(relative)
    parts = PurePosixPath(text).parts
    if not parts or text.startswith("/") or any(p in (".", "..") or "\\" in p or "\0" in p for p in parts):
        raise ValueError(f"{text!r} is not a path inside {root}: refusing it")
    path = Path(root)
    for depth, part in enumerate(parts, 1):
        path = path / part
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            break
        if stat.S_ISLNK(mode):
            raise ValueError(f"{path} is a symbolic link: refusing to follow it out of {root} (remove the link)")
        if depth < len(parts) and not stat.S_ISDIR(mode):
            raise ValueError(f"{path} is {kind(mode) or 'a file'}, not a folder: refusing to use {root / text}")
    return Path(root, *parts)


def writable(root: Path, relative: str) -> Path:
    """``root / relative`` checked as :func:`inside` does, holding a regular file or nothing: a path that
    may be written or replaced without reaching anything outside ``root``."""
    path = inside(root, relative)
    refuse_unless_regular(path, "write")
    return path


def read_regular(path: Path) -> bytes:
    """The bytes of ``path``, which must be a regular file (not a link, a FIFO, a device or a folder)."""
    refuse_unless_regular(path, "read")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:  # replaced by a link since the check
            raise ValueError(f"{path} is a symbolic link, not a regular file: refusing to read it") from None
        raise
    with os.fdopen(fd, "rb") as f:
        found = kind(os.fstat(f.fileno()).st_mode)
        if found:
            raise ValueError(f"{path} is {found}, not a regular file: refusing to read it")
        return f.read()


def refuse_unless_regular(path: Path, action: str = "replace") -> None:
    """Refuse a path holding anything but a regular file (nothing at all is allowed)."""
    try:
        found = kind(os.lstat(path).st_mode)
    except FileNotFoundError:
        return
    if found:
        raise ValueError(f"{path} is {found}, not a regular file: refusing to {action} it")
