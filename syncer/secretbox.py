"""Secrets at rest: the registry's kubeconfigs are stored sealed, never in clear.

A value is sealed with AES-256-GCM, which is authenticated: an altered value is refused,
never opened to garbage. The associated data names where the value is stored (its
``context``, e.g. ``clusters/prod/kubeconfig``), so a value copied into another row does
not open either. The stored form is ``kpenc1:<key id>:<base64url(nonce | ciphertext)>``;
the prefix tells sealed values from rows written in clear by older versions, and the key
id says which key opens it.

Keys live in a key file made and read as every secret file of kubepedia is (see
``syncer.secretfile``: made exclusively, ``0600``; a symbolic link, a file open to group or
others, or one owned by another user is refused): one key per line, ``<id> <base64 of 32
bytes>``. The last key seals; every key opens. So a key is rotated by appending a new one,
re-sealing every stored value with it, and then dropping the old ones. A running
:class:`SecretBox` notices a changed key file (a stat per use) and reloads it, so processes
sharing one key file follow a rotation without restart. Every process sharing a database
must use the same keys.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from syncer import secretfile

PREFIX = "kpenc1:"
KEY_FILE_NAME = "secret.keys"
WHAT = "key"  # as in "refusing key file ...", see syncer.secretfile
KEY_BYTES = 32
NONCE_BYTES = 12
_ID_RE = re.compile(r"^[0-9a-f]{8}$")
_HEADER = ("# kubepedia secret keys: the last key seals new values, every key opens them.\n"
           "# Keep this file mode 0600 and identical for every kubepedia serve sharing a database.\n")
Stamp = tuple[int, int, int, int]


class SecretBoxError(Exception):
    """A value cannot be sealed or opened; the message never holds a key or a secret."""


class KeyFileError(SecretBoxError):
    """The key file is missing, unsafe or unreadable."""


@dataclass(frozen=True, slots=True)
class Key:
    id: str
    secret: bytes = field(repr=False)


def new_key(taken: set[str] | frozenset[str] = frozenset()) -> Key:
    while True:
        key_id = secrets.token_hex(4)
        if key_id not in taken:
            return Key(id=key_id, secret=AESGCM.generate_key(bit_length=KEY_BYTES * 8))


def read_key_file(path: Path) -> tuple[list[Key], Stamp]:
    """The keys of ``path``, oldest first, and the stamp of the file they came from."""
    with _key_file_errors():
        found = secretfile.read_bytes(path, WHAT)
    if found is None:
        raise KeyFileError(f"key file {path} does not exist")
    data, st = found
    return _parse(path, data), _stamp(st)


@contextlib.contextmanager
def _key_file_errors() -> Iterator[None]:
    """A key file refused by ``syncer.secretfile`` as a :class:`KeyFileError` (same line)."""
    try:
        yield
    except secretfile.SecretFileError as exc:
        raise KeyFileError(str(exc)) from exc


def _stamp(st: os.stat_result) -> Stamp:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _parse(path: Path, data: bytes) -> list[Key]:
    keys: list[Key] = []
    for number, raw in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key_id, _, encoded = line.partition(" ")
        try:
            secret = base64.b64decode(encoded.strip(), validate=True)
        except binascii.Error:
            secret = b""
        if not _ID_RE.match(key_id) or len(secret) != KEY_BYTES:
            raise KeyFileError(f"key file {path}, line {number}: expected '<8 hex digits> "
                               f"<base64 of {KEY_BYTES} bytes>'")
        if any(k.id == key_id for k in keys):
            raise KeyFileError(f"key file {path}, line {number}: key id {key_id} appears twice")
        keys.append(Key(id=key_id, secret=secret))
    if not keys:
        raise KeyFileError(f"key file {path} holds no key")
    return keys


def _format(keys: list[Key]) -> bytes:
    lines = [f"{k.id} {base64.b64encode(k.secret).decode()}\n" for k in keys]
    return (_HEADER + "".join(lines)).encode()


def create_key_file(path: Path) -> bool:
    """Create ``path`` with one fresh key unless it exists (as a file or a link); returns
    whether it did. Two processes starting at once end up with the same single file.

    A missing directory of a key file kept outside the data dir (``--secret-key-file``) is
    made private (0700). The data dir is not made here: ``kubepedia serve`` makes it first
    (``syncer.datadir``), with the mode its embedded PostgreSQL needs.
    """
    if os.path.lexists(path):
        return False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return secretfile.create(path, _format([new_key()]))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialize changes of one key file (two rotations at once would lose a key)."""
    lock = path.with_name(path.name + ".lock")
    fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _replace(path: Path, keys: list[Key]) -> None:
    # Whoever may read the key file (its owner, see secretfile) writes the new one, so the
    # owner stays the same.
    secretfile.replace(path, _format(keys))


def add_key(path: Path) -> Key:
    """Append a fresh key to the key file; from now on it seals."""
    with _locked(path):
        keys, _ = read_key_file(path)
        key = new_key({k.id for k in keys})
        _replace(path, [*keys, key])
    return key


def drop_keys(path: Path, ids: set[str]) -> list[str]:
    """Remove the keys ``ids`` (never the newest); returns the ids removed."""
    with _locked(path):
        keys, _ = read_key_file(path)
        kept = [k for k in keys[:-1] if k.id not in ids] + keys[-1:]
        dropped = [k.id for k in keys if k not in kept]
        if dropped:
            _replace(path, kept)
    return dropped


class SecretBox:
    """Seals and opens values with the keys of one key file (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys: dict[str, Key] = {}
        self._newest: Key | None = None
        self._stamp: Stamp | None = None
        self._refresh()

    def __repr__(self) -> str:
        return f"SecretBox({str(self.path)!r})"

    def _refresh(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError as exc:
            raise KeyFileError(f"key file {self.path} does not exist") from exc
        if _stamp(st) == self._stamp:
            return
        keys, self._stamp = read_key_file(self.path)
        self._keys = {k.id: k for k in keys}
        self._newest = keys[-1]

    @property
    def key_ids(self) -> list[str]:
        """Key ids, oldest first; the last one seals."""
        self._refresh()
        return list(self._keys)

    def seal(self, plaintext: str, *, context: str) -> str:
        self._refresh()
        assert self._newest is not None
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = AESGCM(self._newest.secret).encrypt(nonce, plaintext.encode(), _aad(context))
        return f"{PREFIX}{self._newest.id}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def open(self, value: str, *, context: str) -> str:
        key_id, payload = split(value)
        self._refresh()
        key = self._keys.get(key_id)
        if key is None:
            raise SecretBoxError(f"sealed with key {key_id}, which key file {self.path} does not hold")
        try:
            plain = AESGCM(key.secret).decrypt(payload[:NONCE_BYTES], payload[NONCE_BYTES:], _aad(context))
        except InvalidTag as exc:
            raise SecretBoxError(f"does not open with key {key_id}: altered, or sealed for another "
                                 "place") from exc
        return plain.decode()


def is_sealed(value: str) -> bool:
    return value.startswith(PREFIX)


def key_id_of(value: str) -> str | None:
    """The id of the key that sealed ``value``; None for a value in clear or damaged."""
    try:
        return split(value)[0]
    except SecretBoxError:
        return None


def split(value: str) -> tuple[str, bytes]:
    """(key id, nonce | ciphertext) of a sealed value."""
    if not is_sealed(value):
        raise SecretBoxError("stored in clear text, not sealed")
    key_id, sep, encoded = value[len(PREFIX):].partition(":")
    try:
        payload = base64.b64decode(encoded.encode("ascii"), altchars=b"-_", validate=True)
    except (binascii.Error, UnicodeEncodeError):
        payload = b""
    if not sep or not _ID_RE.match(key_id) or len(payload) < NONCE_BYTES + 16:
        raise SecretBoxError("damaged: not a sealed value")
    return key_id, payload


def _aad(context: str) -> bytes:
    return f"kubepedia/{context}".encode()
