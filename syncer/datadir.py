"""How kubepedia's data dir is made: here only, so whatever writes into it first (the key
file, the admin token, the embedded PostgreSQL) finds it made the same way.

Only directories made here get a mode of our choosing; one that already exists is left as
it is, whoever made it. The data dir is private to the user running kubepedia (0700),
except under root when the embedded PostgreSQL lives in it: that server runs as a service
user, which must pass through the data dir to its ``pgdata``, so the data dir is made 0711
and the missing parents made along with it are opened for passing through (o+x).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def make(path: Path, *, embedded_server: bool) -> None:
    """Create the data dir ``path`` and its missing parents (see the module); ``embedded_server``
    says whether the embedded PostgreSQL will live in it."""
    passable = embedded_server and os.geteuid() == 0
    missing = []
    for candidate in [path, *path.parents]:
        if os.path.lexists(candidate):
            break
        missing.append(candidate)
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700 if directory == path else 0o777)
        except FileExistsError:
            continue  # made by someone else meanwhile: not ours to change
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            if directory == path:
                os.fchmod(fd, 0o711 if passable else 0o700)
            elif passable:
                os.fchmod(fd, stat.S_IMODE(os.fstat(fd).st_mode) | 0o111)
        finally:
            os.close(fd)
