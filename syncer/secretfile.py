"""Files that hold a secret: the registry's admin token, the embedded PostgreSQL's password,
the keys that seal stored kubeconfigs.

A secret file is made exclusively (``O_CREAT|O_EXCL|O_NOFOLLOW``, mode 0600, written whole
under a temporary name and then linked or renamed into place), and on every read it must
still be what we made: a regular file, not a symbolic link, owned by the user running
kubepedia and closed to group and others. Anything else is refused with one line naming
the file and the fix, rather than used: a secret another user can read is no longer a
secret, and a link may point at a file somebody else controls.
"""

from __future__ import annotations

import errno
import os
import pwd
import secrets
import stat
from pathlib import Path


class SecretFileError(OSError):
    """A secret file cannot be used; the message (one line) names it and says what to do."""


class UnsafeSecretFile(SecretFileError):
    """A secret file is not as kubepedia made it."""


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _refuse(path: Path, what: str, problem: str, fix: str) -> UnsafeSecretFile:
    return UnsafeSecretFile(f"refusing {what} file {path}: {problem}; {fix}")


def _check(path: Path, st: os.stat_result, what: str) -> None:
    """Refuse a secret file that is not a private regular file of ours (see the module)."""
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(path, what, "it is not a regular file", f"remove it (`rm -r {path}`)")
    me = os.geteuid()
    if st.st_uid != me:
        owner = f"it is owned by {_owner(st.st_uid)}, not by {_owner(me)} who runs kubepedia"
        raise _refuse(path, what, owner, f"run `chown {_owner(me)} {path}`")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise _refuse(path, what, f"mode {mode:04o} lets group or others at it", f"run `chmod 600 {path}`")


def read_bytes(path: Path, what: str) -> tuple[bytes, os.stat_result] | None:
    """What ``path`` holds and its status, or None if there is no such file; refused
    (:class:`UnsafeSecretFile`) unless it is a private regular file of ours."""
    try:
        # O_NONBLOCK: a FIFO put in its place must not hang the start; it is refused below.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refuse(path, what, "it is a symbolic link",
                          "replace it with the file itself (`mv` the target there) or remove it") from exc
        raise SecretFileError(f"cannot read {what} file {path}: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        _check(path, st, what)  # before fdopen, which fails on a directory with a traceback
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as handle:
        return handle.read(), st


def read(path: Path, what: str) -> str | None:
    """The secret in ``path`` (stripped; "" when the file is empty), or None if there is none."""
    found = read_bytes(path, what)
    return None if found is None else found[0].decode().strip()


def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _temporary(path: Path, data: bytes) -> Path:
    """``data`` in a new 0600 file next to ``path``, under a name of its own."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    _write_new(tmp, data)
    return tmp


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create(path: Path, data: bytes) -> bool:
    """Make ``path`` hold ``data`` unless something (a file, a link) is there already;
    returns whether it did.

    Written whole under a temporary name, then linked into place: a second process starting
    at the same moment finds either nothing or the whole file, never part of it, and the
    link fails for whichever comes second, which then reads the winner's file.
    """
    if os.path.lexists(path):
        return False
    tmp = _temporary(path, data)
    try:
        os.link(tmp, path)  # never replaces, and never writes through, what is there
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    _sync_dir(path.parent)
    return True


def replace(path: Path, data: bytes) -> None:
    """Put a new file holding ``data`` in the place of ``path`` (a link there is replaced,
    never written through); readers see the old file or the new one, whole."""
    tmp = _temporary(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_dir(path.parent)


def new_token() -> str:
    """A random URL-safe secret (256 bits) that never starts with "-": given after a flag
    (``--token VALUE``), one that did would be read as an option and refused."""
    while (value := secrets.token_urlsafe(32)).startswith("-"):
        pass
    return value


def ensure(path: Path, what: str) -> str:
    """The secret in ``path``, made (random, URL-safe) on first use; two processes starting
    at the same moment end up with the same secret (see :func:`create`)."""
    existing = read(path, what)
    if existing:
        return existing
    value = new_token()
    data = f"{value}\n".encode()
    if existing == "":  # there but empty: damaged, replace it
        replace(path, data)
        return value
    if create(path, data):
        return value
    theirs = read(path, what)
    if not theirs:
        raise _refuse(path, what, "it is empty", f"remove it (`rm {path}`)")
    return theirs


def write_temporary(path: Path, value: str, *, uid: int | None = None, gid: int | None = None) -> None:
    """A new 0600 file holding ``value``, given to ``uid`` when set (a file handed to a program
    that runs as another user); the caller removes it."""
    _write_new(path, (value + "\n").encode())
    if uid is not None:
        os.chown(path, uid, -1 if gid is None else gid, follow_symlinks=False)
