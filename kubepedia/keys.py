"""``kubepedia keys rotate|prune``: the keys that seal stored kubeconfigs.

Run on the server's machine, against its key file and its database (the embedded one
while ``kubepedia serve`` runs, or ``--database-url``). ``rotate`` appends a new key and
re-seals every stored kubeconfig with it; running servers that read the same key file
notice the change and use the new key at once. ``prune`` then drops the older keys, after
checking that no stored kubeconfig still needs them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import asyncpg

from kube.configfile import from_env
from kubepedia.config import default_data_dir
from kubepedia.http import CommandError
from syncer import registry, secretbox
from syncer.db import DatabaseUnreachable, connect
from syncer.embedded import EmbeddedPostgres
from syncer.registry import Kubeconfigs, RegistryError
from syncer.secretbox import SecretBox, SecretBoxError


def add_key_file_argument(parser: argparse.ArgumentParser) -> None:
    action = parser.add_argument(
        "--secret-key-file", type=Path, default=None,
        help=f"the keys sealing stored kubeconfigs (default: {secretbox.KEY_FILE_NAME} in "
             "the data dir); every kubepedia serve sharing a database needs the same keys")
    from_env(action, "KUBEPEDIA_SECRET_KEY_FILE")


def add_parser(sub: Any) -> None:
    keys = sub.add_parser("keys", help="rotate the keys that seal stored kubeconfigs")
    keys.add_argument("--data-dir", type=Path, default=default_data_dir(),
                      help="the server's data dir (its key file and embedded PostgreSQL)")
    keys.add_argument("--database-url", default=os.environ.get("KUBEPEDIA_DATABASE_URL") or None,
                      help="the server's PostgreSQL URL (default: its embedded server)")
    add_key_file_argument(keys)
    verbs = keys.add_subparsers(dest="verb", required=True)
    verbs.add_parser("rotate", help="add a new key and re-seal every stored kubeconfig with it")
    verbs.add_parser("prune", help="drop the older keys once no stored kubeconfig needs them")


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(args))
    except (CommandError, SecretBoxError, RegistryError, DatabaseUnreachable, OSError) as exc:
        print(f"kubepedia: {exc}", file=sys.stderr)
        return 1


async def _run(args: argparse.Namespace) -> int:
    path: Path = args.secret_key_file or args.data_dir / secretbox.KEY_FILE_NAME
    box = SecretBox(path)  # an unsafe or missing key file stops here
    conn = await _connect(args)
    try:
        if args.verb == "rotate":
            return await _rotate(conn, box)
        return await _prune(conn, box)
    finally:
        await conn.close()


async def _connect(args: argparse.Namespace) -> asyncpg.Connection:
    if args.database_url:
        return await connect(args.database_url, application_name="kubepedia keys")
    pg = EmbeddedPostgres(data_dir=args.data_dir)
    if not pg.port_file.exists():
        raise CommandError(f"no embedded PostgreSQL in {args.data_dir}: pass the server's --data-dir "
                           "or --database-url")
    try:
        return await connect(pg.url, application_name="kubepedia keys")
    except DatabaseUnreachable as exc:
        raise CommandError(f"{exc} (the embedded PostgreSQL runs while kubepedia serve does)") from exc


async def _rotate(conn: asyncpg.Connection, box: SecretBox) -> int:
    key = secretbox.add_key(box.path)
    result = await registry.reseal_kubeconfigs(conn, Kubeconfigs(box=box), clear_only=False)
    print(f"key {key.id} added; {len(result.resealed)} stored kubeconfig(s) re-sealed with it")
    for cluster, why in result.failed.items():
        print(f"kubepedia: cluster {cluster}: {why}", file=sys.stderr)
    older = box.key_ids[:-1]
    if older and not result.failed:
        print(f"older keys {', '.join(older)} seal nothing now: drop them with 'kubepedia keys prune' "
              "once every server sharing the database reads this key file")
    return 1 if result.failed else 0


async def _prune(conn: asyncpg.Connection, box: SecretBox) -> int:
    ids = box.key_ids
    usage = await registry.key_usage(conn)
    foreign = sorted(k for k in usage if k and k not in ids)
    if foreign:
        raise CommandError(f"stored kubeconfigs are sealed with key {', '.join(foreign)}, which "
                           f"{box.path} does not hold: is it the key file the servers use?")
    busy = [k for k in ids[:-1] if usage.get(k)]
    if busy:
        raise CommandError(f"key {', '.join(busy)} still seals {sum(usage[k] for k in busy)} stored "
                           "kubeconfig(s): run 'kubepedia keys rotate' first")
    dropped = secretbox.drop_keys(box.path, set(ids[:-1]))
    kept = box.key_ids
    if dropped:
        print(f"dropped key {', '.join(dropped)}; key {', '.join(kept)} remains")
    else:
        print(f"nothing to drop: key {', '.join(kept)} is the only one")
    return 0
