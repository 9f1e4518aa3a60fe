"""``kubepedia history``: an object's history, or the changes of a namespace, clusters or
types in a time window, from the read API (``/kubepedia/v1/history/...``).

    kubepedia history deployment/api -n payments --cluster east [--diff]
    kubepedia history -n payments --since 2026-01-02 --before 2026-01-03 [--types pods]

Tables for a terminal (every cell escaped: names and values come from member clusters),
``-o json`` for scripts, ``-o csv`` for spreadsheets. Pages are followed until the answer
is complete or ``--limit`` entries are printed.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from agent.logs import printable
from kubepedia.config import DEFAULT_API_SERVER
from kubepedia.http import JSON, CommandError, Server, add_read_api_tls, get_json, read_api, run_command

PATH = "/kubepedia/v1/history"
CHANGED_SHOWN = 3  # patch paths named in the CHANGED column, then "+N"


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("history", help="an object's changes, or what changed in a namespace or cluster",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("object", nargs="*", metavar="TYPE/NAME",
                        help="the object (TYPE/NAME or TYPE NAME, e.g. deploy/api); without it, changes")
    parser.add_argument("--server", default=DEFAULT_API_SERVER,
                        help=f"the read API's URL (default {DEFAULT_API_SERVER})")
    add_read_api_tls(parser)
    parser.add_argument("-n", "--namespace", default=None)
    parser.add_argument("--cluster", action="append", default=[], help="a member cluster; repeatable")
    parser.add_argument("--types", default=None, help="changes of these types only: pods,deployments.apps")
    parser.add_argument("--change-types", default=None, help="ADDED, MODIFIED, DELETED (comma separated)")
    parser.add_argument("--since", default=None, help="from this time on (RFC 3339, '2006-01-02 15:04:05'"
                        " UTC, 2006-01-02, or unix seconds)")
    parser.add_argument("--before", default=None, help="up to, not including, this time")
    parser.add_argument("--limit", type=int, default=None, help="print at most this many entries")
    parser.add_argument("--diff", action="store_true", help="an object's history: print each change's diff")
    parser.add_argument("-o", "--output", choices=["table", "json", "csv"], default="table")


def _object_query(args: argparse.Namespace) -> dict[str, str]:
    words = args.object
    if len(words) == 1 and "/" in words[0]:
        kind, _, name = words[0].partition("/")
    elif len(words) == 2 and "/" not in words[0]:
        kind, name = words
    else:
        raise CommandError("name the object as TYPE/NAME or TYPE NAME (e.g. deploy/api)")
    if len(args.cluster) > 1:
        raise CommandError("an object's history takes one --cluster (or none: every cluster)")
    if args.types or args.change_types or args.since or args.before:
        raise CommandError("--types, --change-types, --since and --before select changes, not an object's"
                           " history")
    query = {"resource": kind, "name": name, "namespace": args.namespace or ""}
    if args.cluster:
        query["cluster"] = args.cluster[0]
    return query


def _changes_query(args: argparse.Namespace) -> dict[str, str]:
    if args.diff:
        raise CommandError("--diff shows an object's history: name the object")
    given = {"namespace": args.namespace, "clusters": ",".join(args.cluster) or None, "types": args.types,
             "changeTypes": args.change_types, "since": args.since, "before": args.before}
    return {k: v for k, v in given.items() if v}


async def _fetch(server: Server, path: str, query: dict[str, str], *, most: int | None) -> list[JSON]:
    """Every page's items, up to ``most``."""
    items: list[JSON] = []
    if most is not None:
        query = {**query, "limit": str(most)}  # the server's pages are no larger than needed
    params = dict(query)
    while most is None or len(items) < most:
        body = await get_json(server, path, params=params)
        items += body.get("items") or []
        token = (body.get("metadata") or {}).get("continue")
        if not token:
            break
        params = {**query, "continue": token}
    return items if most is None else items[:most]


def _time(entry: JSON) -> str:
    return str(entry["time"])[:19] + "Z"  # seconds are enough for a table


def _changed(entry: JSON) -> str:
    """The patch's paths, as dotted fields: what a reader scans for."""
    if entry.get("patch") is None:
        return "-"
    paths = [op["path"][1:].replace("/", ".").replace("~1", "/").replace("~0", "~") or "(object)"
             for op in entry["patch"]]
    more = f" +{len(paths) - CHANGED_SHOWN}" if len(paths) > CHANGED_SHOWN else ""
    return ", ".join(paths[:CHANGED_SHOWN]) + more


def object_rows(items: Sequence[JSON]) -> list[list[str]]:
    head = ["SEQ", "TIME", "CLUSTER", "CHANGE", "RESOURCEVERSION", "CHANGED"]
    return [head, *([str(i["seq"]), _time(i), i["cluster"], i["type"], i["resourceVersion"], _changed(i)]
                    for i in items)]


def change_rows(items: Sequence[JSON]) -> list[list[str]]:
    head = ["SEQ", "TIME", "CLUSTER", "NAMESPACE", "KIND", "NAME", "CHANGE"]
    return [head, *([str(i["seq"]), _time(i), i["cluster"], i["namespace"] or "-", i["kind"], i["name"],
                     i["type"]] for i in items)]


def table(rows: Sequence[Sequence[str]]) -> str:
    cells = [[printable(str(c)) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)


def as_csv(rows: Sequence[Sequence[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows([[printable(str(c)) for c in row] for row in rows])
    return out.getvalue().rstrip("\n")


def render(items: Sequence[JSON], *, output: str, of_object: bool, diff: bool) -> str:
    if output == "json":
        # ASCII only: values from member clusters cannot reach the terminal as control sequences.
        return json.dumps({"items": list(items)}, indent=2, ensure_ascii=True)
    rows = object_rows(items) if of_object else change_rows(items)
    if output == "csv":
        return as_csv(rows)
    text = table(rows)
    if diff:
        text += "".join(f"\n\n{printable(str(i['seq']))} {printable(i['type'])}\n"
                        + "\n".join(printable(line) for line in (i.get("diff") or "").splitlines())
                        for i in items)
    return text


async def _run(args: argparse.Namespace) -> str:
    of_object = bool(args.object)
    query = _object_query(args) if of_object else _changes_query(args)
    if args.limit is not None and args.limit <= 0:
        raise CommandError("--limit must be positive")
    path = f"{PATH}/object" if of_object else f"{PATH}/changes"
    items = await _fetch(read_api(args), path, query, most=args.limit)
    return render(items, output=args.output, of_object=of_object, diff=args.diff)


def run(args: argparse.Namespace) -> int:
    return run_command(_run(args))
