"""``kubepedia cluster add|list|remove|rotate-token``: the registry, through the running server."""

from __future__ import annotations

import argparse
import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from agent.logs import printable
from agent.tls import TlsError, client_context
from kubepedia.config import DEFAULT_SERVER, default_data_dir, parse_duration, read_admin_token
from kubepedia.http import JSON, CommandError, Server, call, document, run_command
from syncer.secretfile import SecretFileError

# kubeconfig fields naming a file, and the inline field that replaces each.
_FILE_FIELDS = {"certificate-authority": "certificate-authority-data",
                "client-certificate": "client-certificate-data", "client-key": "client-key-data",
                "tokenFile": "token"}


def add_parser(sub: Any) -> None:
    cluster = sub.add_parser("cluster", help="register, list and remove member clusters")
    _connection_options(cluster, server=None, data_dir=default_data_dir(), ca=None)
    verbs = cluster.add_subparsers(dest="verb", required=True)
    add = verbs.add_parser("add", help="register a cluster")
    _connection_options(add)
    add.add_argument("name")
    how = add.add_mutually_exclusive_group(required=True)
    how.add_argument("--kubeconfig", type=Path, help="pull mode: the syncer connects with this kubeconfig")
    how.add_argument("--push", action="store_true", help="push mode: prints a token for the agent")
    add.add_argument("--context", default=None, help="kubeconfig context (default: current)")
    add.add_argument("--label", action="append", default=[], help="KEY=VALUE, repeatable")
    add.add_argument("--config", type=Path, default=None, help="selection YAML (pull mode)")
    add.add_argument("--keep-secret-data", action="store_true")
    add.add_argument("--max-types", type=int, default=None,
                     help="quota: resource types this cluster may sync (default 2000)")
    add.add_argument("--max-objects", type=int, default=None,
                     help="quota: objects this cluster may keep in the store (default 10000000)")
    listing = verbs.add_parser("list", help="clusters with health and per-type sync state")
    _connection_options(listing)
    listing.add_argument("-o", "--output", choices=["table", "wide", "json"], default="table")
    remove = verbs.add_parser("remove", help="unregister a cluster and delete all its objects")
    remove.add_argument("name")
    _connection_options(remove)
    rotate = verbs.add_parser("rotate-token", help="a new agent token for a push cluster (shown once)")
    rotate.add_argument("name")
    rotate.add_argument("--grace", type=_grace, default=None, metavar="DURATION",
                        help="how long the current token keeps working, so that the agent can be "
                             "switched without a gap (default 1h; 0: it stops at once, for a leaked "
                             "token; at most 30d)")
    _connection_options(rotate)


def _connection_options(parser: argparse.ArgumentParser, **defaults: Any) -> None:
    """``--server`` and ``--data-dir``, accepted before the verb (where the defaults live) and
    after it (suppressed unless given, so a verb's parser does not overwrite a value given
    before the verb)."""
    server = defaults.get("server", argparse.SUPPRESS)
    data_dir = defaults.get("data_dir", argparse.SUPPRESS)
    ca = defaults.get("ca", argparse.SUPPRESS)
    parser.add_argument("--server", default=server, help=f"the server's admin URL (default {DEFAULT_SERVER})")
    parser.add_argument("--data-dir", type=Path, default=data_dir,
                        help="where the local server keeps its admin token")
    parser.add_argument("--ca", type=Path, default=ca, metavar="FILE",
                        help="PEM CA that signed the admin listener's certificate, for an https "
                             "--server (default: the system's trust store)")


def _grace(value: str) -> float:
    if value.strip() in ("0", "0s"):
        return 0.0
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def flatten_kubeconfig(path: Path, *, context: str | None) -> str:
    """The kubeconfig as one self-contained document for one context (its cluster and user
    only, file references inlined), since it is stored in the database and used by
    whichever syncer owns the cluster. Like ``kubectl config view --minify --flatten``: the
    user's other credentials stay on this machine, and the server, which refuses documents
    that name files or commands, is not sent entries it has no use for."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CommandError(f"cannot read kubeconfig {path}: {exc}") from exc
    if not isinstance(doc, dict):
        raise CommandError(f"{path} is not a kubeconfig")
    name = context or doc.get("current-context")
    if not name:
        raise CommandError(f"{path} has no current-context: name one with --context")
    chosen = _named(doc, "contexts", name)
    if chosen is None:
        raise CommandError(f"{path} has no context {name!r}")
    body = chosen.get("context")
    if not isinstance(body, dict):
        body = {}
    cluster = _named(doc, "clusters", body.get("cluster"))
    if cluster is None:
        raise CommandError(f"{path}: context {name!r} names no cluster of the file")
    user = _named(doc, "users", body.get("user"))
    _inline_files(cluster.get("cluster"), base=path.parent)
    if user is not None:
        _inline_files(user.get("user"), base=path.parent)
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": name,
                           "contexts": [chosen], "clusters": [cluster],
                           "users": [user] if user is not None else []})


def _named(doc: dict[str, Any], section: str, name: Any) -> dict[str, Any] | None:
    entries = doc.get(section)
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and name is not None and entry.get("name") == name:
            return entry
    return None


def _inline_files(fields: Any, *, base: Path) -> None:
    if not isinstance(fields, dict):
        return
    for name, inline in _FILE_FIELDS.items():
        ref = fields.pop(name, None)
        if ref and inline not in fields:
            try:
                content = (base / ref).read_bytes()
            except OSError as exc:
                raise CommandError(f"kubeconfig refers to {ref}: {exc}") from exc
            # A token file holds the token itself; the other files go in as base64.
            fields[inline] = (content.decode("utf-8", "replace").strip() if name == "tokenFile"
                              else base64.b64encode(content).decode())


def _admin(args: argparse.Namespace) -> Server:
    token = read_admin_token(args.data_dir)
    if token is None:
        raise CommandError(f"no admin token: set KUBEPEDIA_ADMIN_TOKEN or use --data-dir of the server "
                           f"(looked in {args.data_dir})")
    url = (args.server or DEFAULT_SERVER).rstrip("/")
    try:
        verify = client_context(url, ca=args.ca, ca_flag="--ca")
    except TlsError as exc:
        raise CommandError(str(exc)) from exc
    return Server(url=url, name="kubepedia server", role="kubepedia admin listener",
                  headers={"Authorization": f"Bearer {token}"}, ssl=verify)


async def _call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> JSON:
    server = _admin(args)
    return document(server, await call(server, method, path, body=body))


def run(args: argparse.Namespace) -> int:
    return run_command(_run(args), failures=(SecretFileError,))


async def _run(args: argparse.Namespace) -> str:
    if args.verb == "add":
        return await _add(args)
    if args.verb == "rotate-token":
        return await _rotate(args)
    if args.verb == "remove":
        result = await _call(args, "DELETE", f"/admin/v1/clusters/{quote(args.name, safe='')}")
        return f"cluster {result['name']} removed ({result['deleted']} objects deleted)"
    clusters = (await _call(args, "GET", "/admin/v1/clusters"))["clusters"]
    if args.output == "json":
        # ASCII only: names and errors come from member clusters; escaped, no byte of them can
        # reach the terminal as a control sequence.
        return json.dumps({"clusters": clusters}, indent=2, ensure_ascii=True)
    return render_table(clusters, wide=args.output == "wide")


async def _add(args: argparse.Namespace) -> str:
    labels = dict(_label(text) for text in args.label)
    settings: dict[str, Any] = {"keepSecretData": bool(args.keep_secret_data)}
    for key, value in (("maxTypes", args.max_types), ("maxObjects", args.max_objects)):
        if value is not None:
            settings[key] = value
    if args.config is not None:
        try:
            settings["selection"] = yaml.safe_load(args.config.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise CommandError(f"cannot read {args.config}: {exc}") from exc
    body: dict[str, Any] = {"name": args.name, "labels": labels, "settings": settings,
                            "mode": "push" if args.push else "pull"}
    if args.kubeconfig is not None:
        body["kubeconfig"] = flatten_kubeconfig(args.kubeconfig, context=args.context)
    result = await _call(args, "POST", "/admin/v1/clusters", body)
    if result.get("token"):
        return f"cluster {args.name} registered (push). Agent token, shown once:\n{result['token']}"
    return f"cluster {args.name} registered (pull); a syncer will start syncing it within seconds"


async def _rotate(args: argparse.Namespace) -> str:
    body = {"graceSeconds": args.grace} if args.grace is not None else {}
    result = await _call(args, "POST", f"/admin/v1/clusters/{quote(args.name, safe='')}/token", body)
    expires = result.get("previousTokenExpiresAt")
    until = (f"the previous token works until {expires}: switch the agent to the new one before then"
             if expires else "the previous token no longer works")
    return f"cluster {args.name}: new agent token, shown once ({until}):\n{result['token']}"


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise CommandError(f"--label expects KEY=VALUE, got {text!r}")
    return key, value


def render_table(clusters: list[dict[str, Any]], *, wide: bool) -> str:
    """The table (every cell escaped: names and errors come from member clusters and agents)."""
    head = ["NAME", "MODE", "HEALTH", "TYPES", "OBJECTS", "SKIPPED", "ERRORS", "LAG"]
    rows = [[c["name"], c["mode"], _health(c), str(len(c["types"])), str(c["objects"]),
             str(c.get("skipped", 0)), str(c["errors"]), _lag(c["lagSeconds"])] for c in clusters]
    lines = _columns([[printable(str(cell)) for cell in row] for row in [head, *rows]])
    if wide:
        for c in clusters:
            if c.get("lastError"):
                lines.append(printable(f"  {c['name']}: error={c['lastError']}"))
            for t in c["types"]:
                skipped = f" skipped={t['skipped']}" if t.get("skipped") else ""
                error = f" error={t['lastError']}" if t["lastError"] else ""
                lines.append(printable(f"  {c['name']}/{t['type']}: {t['phase']} objects={t['objects']}"
                                       f"{skipped} checkpoint={t['checkpoint']}{error}"))
    return "\n".join(lines)


def _health(cluster: dict[str, Any]) -> str:
    if cluster["healthy"] is None:
        return "Unknown"
    return "Healthy" if cluster["healthy"] else f"Stale ({cluster['healthMessage'] or 'unhealthy'})"


def _lag(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.0f}s"


def _columns(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["   ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
