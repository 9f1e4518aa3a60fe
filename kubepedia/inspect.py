"""``kubepedia inspect``: the latest inspection report of the read API, in a terminal (a table
per check, most severe first), as JSON or as CSV; ``--run`` asks the server to run the
checks first.

Like ``kubepedia report``, it talks to the read API over HTTP (``--server``), and every cell
is made printable: names and messages come from member clusters.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from agent.logs import printable
from kubepedia.config import DEFAULT_API_SERVER
from kubepedia.http import add_read_api_arguments, call, document, get_json, get_text, read_api, run_command
from kubepedia.report import ascii_json, table

PATH = "/kubepedia/v1/inspections"


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("inspect", help="the latest inspection report: problems found across clusters")
    parser.add_argument("--cluster", help="only these clusters, comma separated")
    parser.add_argument("--namespace", help="only these namespaces, comma separated")
    parser.add_argument("--check", help="only these checks, comma separated")
    parser.add_argument("--severity", help="only these severities (critical, warning, info), comma separated")
    parser.add_argument("--run", action="store_true", help="run the checks now, then show the report")
    parser.add_argument("-o", "--output", choices=["table", "json", "csv"], default="table")
    add_read_api_arguments(parser, default_server=DEFAULT_API_SERVER)


def _params(args: argparse.Namespace) -> dict[str, str]:
    chosen = {
        "clusters": args.cluster,
        "namespaces": args.namespace,
        "checks": args.check,
        "severity": args.severity,
    }
    params = {key: value for key, value in chosen.items() if value is not None}
    if args.output == "csv":
        params["format"] = "csv"
    return params


def _object(item: dict[str, Any]) -> str:
    if not item.get("resource"):
        return "-"
    group = f".{item['group']}" if item.get("group") else ""
    return f"{item['resource']}{group}/{item['name']}"


def render(body: dict[str, Any]) -> str:
    """The report as text: a header, then per check with findings its table."""
    meta = body.get("metadata") or {}
    lines = [
        f"inspection run {meta.get('run')} ({meta.get('trigger')}), finished {meta.get('finishedAt')}:"
        f" {body.get('findings', 0)} findings"
    ]
    items = list(body.get("items") or [])
    for check in body.get("checks") or []:
        if not check.get("findings"):
            continue
        rows = [
            {
                "cluster": i["cluster"],
                "namespace": i["namespace"] or "-",
                "object": _object(i),
                "message": i["message"],
            }
            for i in items
            if i.get("check") == check.get("name")
        ]
        lines += [
            "",
            printable(
                f"{str(check.get('severity')).upper()}  {check.get('name')}:"
                f" {check.get('findings')} ({check.get('description')})"
            ),
        ]
        lines += [
            "  " + line for line in table(["cluster", "namespace", "object", "message"], rows).split("\n")
        ]
        if check.get("more"):
            lines.append(f"  ... and {check['more']} more")
    if not body.get("findings"):
        lines.append("no findings")
    return "\n".join(lines)


async def _run(args: argparse.Namespace) -> str:
    server = read_api(args)
    if args.run:
        document(server, await call(server, "POST", PATH + "/runs"))
    path, params = PATH + "/runs/latest", _params(args)
    if args.output == "csv":
        text = (await get_text(server, path, params=params)).rstrip("\r\n")
        return "\n".join(map(printable, text.split("\r\n"))) if sys.stdout.isatty() else text
    body = await get_json(server, path, params=params)
    return ascii_json(body) if args.output == "json" else render(body)


def run(args: argparse.Namespace) -> int:
    return run_command(_run(args))
