"""``kubepedia report [NAME]``: a report of the read API, as a terminal table, JSON or CSV.

Without a name, the reports the server offers. The command talks to the read API over
HTTP (``--server``, as ``kubepedia kubeconfig`` does); every cell of a table is escaped,
since names, images and reasons come from member clusters.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any
from urllib.parse import quote

import orjson

from agent.logs import printable
from kubepedia.config import DEFAULT_API_SERVER
from kubepedia.http import add_read_api_tls, get_json, get_text, read_api, run_command

PATH = "/kubepedia/v1/reports"


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("report", help="reports across clusters: counts, pods, images, nodes, events,"
                            " clusters")
    parser.add_argument("name", nargs="?", help="the report (without one: the reports the server offers)")
    parser.add_argument("--clusters", help="only these clusters, comma separated")
    parser.add_argument("--namespaces", help="only these namespaces, comma separated")
    parser.add_argument("--since", help="events: last seen at or after (RFC 3339, 2006-01-02, unix)")
    parser.add_argument("--before", help="events: last seen before this time")
    parser.add_argument("-o", "--output", choices=["table", "json", "csv"], default="table")
    parser.add_argument("--server", default=DEFAULT_API_SERVER,
                        help=f"the read API's URL (default {DEFAULT_API_SERVER})")
    add_read_api_tls(parser)


def _params(args: argparse.Namespace) -> dict[str, str]:
    params = {key: value for key in ("clusters", "namespaces", "since", "before")
              if (value := getattr(args, key)) is not None}
    if args.output == "csv":
        params["format"] = "csv"
    return params


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def table(columns: list[str], items: list[dict[str, Any]]) -> str:
    """Aligned columns, headers in capitals, every cell one line of printable characters."""
    rows = [[_header(c) for c in columns]]
    rows += [[printable(_text(item.get(c))) for c in columns] for item in items]
    widths = [max(len(r[i]) for r in rows) for i in range(len(columns))]
    return "\n".join("   ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def _header(name: str) -> str:
    """``dataAgeSeconds`` -> ``DATA AGE SECONDS``."""
    return "".join(f" {ch}" if ch.isupper() else ch for ch in name).upper()


def ascii_json(body: Any) -> str:
    """Indented JSON with every non-ASCII character escaped: still the same JSON, and no byte of
    a member cluster's text reaches the terminal as a control or direction sequence."""
    text = orjson.dumps(body, option=orjson.OPT_INDENT_2).decode()
    return "".join(ch if ch.isascii() else _escaped(ch) for ch in text)


def _escaped(ch: str) -> str:
    code = ord(ch)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # a UTF-16 surrogate pair, as JSON spells characters beyond the BMP
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


async def _run(args: argparse.Namespace) -> str:
    server = read_api(args)
    path = PATH if args.name is None else f"{PATH}/{quote(args.name, safe='')}"
    params = _params(args) if args.name is not None else {}
    if args.output == "csv" and args.name is not None:
        text = (await get_text(server, path, params=params)).rstrip("\r\n")
        # Into a file or pipe, the server's CSV as it is; onto a terminal, one inert line each.
        return "\n".join(map(printable, text.split("\r\n"))) if sys.stdout.isatty() else text
    body = await get_json(server, path, params=params)
    if args.output == "json":
        return ascii_json(body)
    if args.name is None:
        return table(["name", "description"], list(body.get("items") or []))
    columns = [str(c["name"]) for c in body.get("columns") or []]
    return table(columns, list(body.get("items") or []))


def run(args: argparse.Namespace) -> int:
    return run_command(_run(args))
