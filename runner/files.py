"""Opening files without trusting the file system: every file bulkops opens goes through here.

Two kinds of files, two rules:

* **Files it writes** (checkpoints, the job lock, the write probe, report and plan asides) live in
  a directory others could share. They are opened with ``O_NOFOLLOW`` (a planted link never
  redirects a write), created with ``O_EXCL`` and mode 0600 from the first instant (never
  ``O_TRUNC`` on whatever is there), and an existing one is used only if it is a regular file of
  this user's (or root's) with no other hard link. The directory itself must not be writable
  by others: an ``o+w`` directory, a group-writable one of a group this process is not in, or one
  owned by another user is refused. A Kubernetes ``fsGroup`` volume (owned by root, group the
  pod's own ``fsGroup``, ``g+ws``) passes.
* **Files it reads** that the user names (job spec, config, manifests) may be links — a
  Kubernetes ConfigMap volume presents every file as one — but must be regular files: a FIFO,
  ``/dev/zero`` or a socket is refused at once (opened with ``O_NONBLOCK``, so a FIFO without a
  writer does not block the open), and specs and configs are read up to a bound, never beyond.

Every check is made on the open descriptor (``fstat``), so a file swapped between a check and
its use is caught. Refusals raise :class:`~runner.errors.UntrustedFile`; callers re-raise it
naming the field the path came from.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from runner.errors import InputError, UntrustedFile

__all__ = [
    "check_directory_trust",
    "check_own",
    "create_aside",
    "create_new",
    "kind_of",
    "make_private_directory",
    "open_own",
    "open_own_for_append",
    "open_regular",
    "open_regular_stream",
    "read_regular_bounded",
    "size_words",
]

_LINK_FIX = "bulkops never follows a link to a file it writes: give the file itself"


def kind_of(mode: int) -> str:
    """What a non-regular file is, in words ("a FIFO", "a character device", ...)."""
    for test, words in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return words
    return "not a regular file"


def size_words(limit: int) -> str:
    """A byte bound in words: 1 MiB, 2 GiB, 1000 bytes."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if limit >= size and limit % size == 0:
            return f"{limit // size} {unit}"
    return f"{limit:,} bytes"


def _not_regular(path: object, mode: int) -> UntrustedFile:
    return UntrustedFile(
        path,
        f"is {kind_of(mode)}, not a regular file",
        "give the path of a regular file (a pipe or device may never end)",
    )


def _open_refused(path: object, exc: OSError) -> UntrustedFile | None:
    """The refusal an ``os.open`` error stands for, if it is one of a link, directory or FIFO."""
    if exc.errno == errno.ELOOP:
        return UntrustedFile(path, "is a symbolic link", _LINK_FIX)
    if exc.errno == errno.EISDIR:
        return UntrustedFile(path, "is a directory", "give the path of a file")
    if exc.errno == errno.ENXIO:  # O_WRONLY|O_NONBLOCK on a FIFO with no reader
        return UntrustedFile(
            path, "is a FIFO (named pipe), not a regular file", "give the path of a regular file"
        )
    return None


def open_regular(path: Path, *, follow: bool = True) -> int:
    """A read-only descriptor of ``path`` once ``fstat`` shows a regular file.

    ``O_NONBLOCK`` keeps the open of a FIFO from waiting for a writer; it is cleared again (it
    means nothing to a regular file). With ``follow=False`` a link is refused too. OSErrors
    other than the refusals (no such file, permission) are left to the caller to word.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        refused = _open_refused(path, exc)
        if refused is not None:
            raise refused from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _not_regular(path, mode)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular_bounded(path: Path, limit: int) -> bytes:
    """The bytes of the regular file at ``path`` (links followed), refused past ``limit`` bytes:
    no more than ``limit + 1`` bytes are ever read, whatever the file claims or becomes."""
    with os.fdopen(open_regular(path), "rb") as f:
        if os.fstat(f.fileno()).st_size > limit:
            raise _too_large(path, limit)
        data = f.read(limit + 1)
    if len(data) > limit:  # it grew after the fstat
        raise _too_large(path, limit)
    return data


def read_input(
    path: Path,
    limit: int,
    error: Callable[[str], InputError],
    *,
    noun: str,
    hint: str = "",
) -> bytes:
    """The bytes of an input file (a spec, a config), every way it can be unusable turned into
    ``error`` with one line naming ``path``; ``noun`` says what the file should be ("job spec")."""
    try:
        return read_regular_bounded(path, limit)
    except UntrustedFile as exc:
        if exc.reason.startswith("is a directory"):
            raise error(f"{path}: is a directory, not a {noun} file") from None
        raise error(
            f"{path}: {exc.reason}: a {noun} is a YAML file of at most {size_words(limit)}{hint}"
        ) from None
    except FileNotFoundError:
        raise error(f"{path}: no such {noun} file") from None
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc.strerror})") from None


def _too_large(path: object, limit: int) -> UntrustedFile:
    return UntrustedFile(
        path, f"is larger than {size_words(limit)}", "give a smaller file (it is read whole)"
    )


def _trusted_owners() -> tuple[int, int]:
    return os.geteuid(), 0


def check_own(path: object, st: os.stat_result) -> None:
    """Refuse unless ``st`` is a regular file of this user's (or root's) with one link."""
    if not stat.S_ISREG(st.st_mode):
        raise _not_regular(path, st.st_mode)
    if st.st_uid not in _trusted_owners():
        raise UntrustedFile(
            path,
            f"belongs to another user (uid {st.st_uid})",
            "bulkops uses only files its own user wrote: run it as that user, or remove the "
            "file if you do not know where it came from",
        )
    if st.st_nlink > 1:
        raise UntrustedFile(
            path,
            f"has {st.st_nlink} hard links",
            "bulkops writes only files of its own: remove the other links",
        )


def open_own(path: Path, flags: int, *, create: bool = False, mode: int = 0o600) -> int:
    """A descriptor of ``path`` opened with ``flags`` (plus ``O_CREAT`` if ``create``), never
    through a link, and only if it is this user's own regular file (see :func:`check_own`)."""
    all_flags = flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    if create:
        all_flags |= os.O_CREAT
    try:
        fd = os.open(path, all_flags, mode)
    except OSError as exc:
        refused = _open_refused(path, exc)
        if refused is not None:
            raise refused from None
        raise
    try:
        check_own(path, os.fstat(fd))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_own_for_append(path: Path) -> int:
    """A read-write, appending descriptor of an existing file of this user's (a checkpoint)."""
    return open_own(path, os.O_RDWR | os.O_APPEND)


def create_new(path: Path, flags: int = os.O_WRONLY, mode: int = 0o600) -> int:
    """A descriptor of a file created here and now, mode 0600 from the start (FileExistsError
    if anything — a file, a link, even a dangling one — is already at ``path``)."""
    return os.open(path, flags | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)


def create_aside(path: Path) -> tuple[Path, int]:
    """(``path`` + ``.partial``, a descriptor of it, new): where a file is written before it is
    renamed over ``path``. A leftover aside (a crash, or a planted link) is unlinked first —
    the name only; a link's target is never touched."""
    aside = path.with_name(path.name + ".partial")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(aside)
    return aside, create_new(aside)


def make_private_directory(directory: Path) -> None:
    """Create ``directory`` (and its parents) if missing; what bulkops creates is 0700."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)


def check_directory_trust(directory: Path) -> None:
    """Refuse a directory someone else could plant files or links in.

    Trusted: owned by this user or root; not writable by others; writable by its group only if
    this process is in that group (a Kubernetes ``fsGroup`` volume: root-owned, group the pod's
    ``fsGroup``, mode 2775). A link to a directory is followed: where the checkpoints live is
    the operator's choice; what is checked is the directory they end up in.
    """
    try:
        st = os.stat(directory)
    except OSError as exc:
        raise UntrustedFile(
            directory, f"cannot be examined ({exc.strerror})", "give a directory bulkops can use"
        ) from None
    if not stat.S_ISDIR(st.st_mode):
        raise UntrustedFile(directory, f"is {kind_of(st.st_mode)}", "give a directory")
    bits = stat.S_IMODE(st.st_mode)
    if bits & stat.S_IWOTH:
        raise UntrustedFile(
            directory,
            f"is writable by every user (mode {bits:04o}): another user could plant a "
            "checkpoint or a link in it",
            f"chmod o-w {directory}",
        )
    if st.st_uid not in _trusted_owners():
        raise UntrustedFile(
            directory,
            f"belongs to another user (uid {st.st_uid}), who could plant a checkpoint in it",
            "use a directory of the user bulkops runs as (or a root-owned one, group-writable "
            "by this process's group, as a Kubernetes fsGroup volume is)",
        )
    groups = {os.getegid(), *os.getgroups()}
    if bits & stat.S_IWGRP and st.st_gid not in groups:
        raise UntrustedFile(
            directory,
            f"is writable by group {st.st_gid}, which this process is not in: its members "
            "could plant a checkpoint or a link in it",
            f"chmod g-w {directory}",
        )


def open_regular_stream(path: Path) -> BinaryIO:
    """:func:`open_regular` (links followed) as a buffered binary stream, for a long read."""
    return os.fdopen(open_regular(path), "rb")
