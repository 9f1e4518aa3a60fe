"""How the ``kubepedia`` commands talk to a kubepedia server over HTTP, and how their failures
reach the user: as one line, ``kubepedia: ...``, and exit code 1.

A server's answer is believed only in the shape our listeners give it: a JSON object, and
for an error a Kubernetes ``Status`` whose message is what the user reads. Anything else
(another program on the port, a proxy's HTML page) is named as such instead of being
half-parsed. Every message is made printable before it is shown, since servers quote names
and values from member clusters.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import ssl
import sys
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from agent.errors import connection_problem
from agent.logs import printable
from agent.tls import TlsError, client_context
from kubepedia.config import default_data_dir, read_api_token
from kubepedia.tls import CERT_FILE

READ_API = "kubepedia read API"
JSON = dict[str, Any]
log = logging.getLogger(__name__)


class CommandError(RuntimeError):
    """A problem worth one line to the user."""


@dataclass(frozen=True, kw_only=True)
class Server:
    """A kubepedia listener and the words its failures are told in: "cannot reach the
    ``name`` at ``url``" and "``url`` is not a ``role``"."""

    url: str
    name: str = READ_API
    role: str = READ_API
    headers: Mapping[str, str] = field(default_factory=dict)
    # How an https server is verified (``agent.tls.client_context``): True is the system's trust store.
    ssl: ssl.SSLContext | bool = True


@dataclass(frozen=True)
class Answer:
    status: int
    raw: bytes


def add_read_api_arguments(parser: argparse.ArgumentParser, *, default_server: str,
                           server_help: str = "the read API's URL") -> None:
    """``--server``, ``--token`` and the TLS options of a command that calls the read API."""
    parser.add_argument("--server", default=default_server, help=f"{server_help} (default {default_server})")
    parser.add_argument("--token", default=None,
                        help="bearer token for the read API (default: $KUBEPEDIA_TOKEN, else the "
                             "read token in the data dir)")
    add_read_api_tls(parser)


def add_read_api_tls(parser: argparse.ArgumentParser) -> None:
    """``--ca``, ``--client-cert`` and ``--client-key`` for a read API served over TLS."""
    # --certificate-authority as kubectl spells it, for whoever types kubectl's flag.
    parser.add_argument("--ca", "--certificate-authority", dest="ca", type=Path, default=None,
                        metavar="FILE",
                        help="PEM CA that signed the read API's certificate (https --server; "
                             f"default: the data dir's {CERT_FILE} if there is one, else the "
                             "system's trust store)")
    parser.add_argument("--client-cert", type=Path, default=None, metavar="FILE",
                        help="PEM client certificate, for a server run with --client-ca")
    parser.add_argument("--client-key", type=Path, default=None, metavar="FILE",
                        help="the client certificate's PEM private key")


def read_api_ca(args: argparse.Namespace) -> Path | None:
    """The CA to trust for the read API: ``--ca``, else for an https server the certificate
    that ``kubepedia serve`` made in the data dir, when there is one."""
    if args.ca is not None or not str(args.server).startswith("https:"):
        return args.ca  # type: ignore[no-any-return]
    made = default_data_dir() / CERT_FILE
    return made if made.exists() else None


def read_api(args: argparse.Namespace) -> Server:
    """The read API at ``args.server``, verified and authenticated as the options say, called
    with the caller's token."""
    try:
        verify = client_context(args.server, ca=read_api_ca(args), ca_flag="--ca", cert=args.client_cert,
                                key=args.client_key)
    except TlsError as exc:
        raise CommandError(str(exc)) from exc
    token = read_api_token(default_data_dir(), args.token)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return Server(url=args.server, ssl=verify, headers=headers)


async def call(server: Server, method: str, path: str, *, params: Mapping[str, str] | None = None,
               body: Any = None) -> Answer:
    """One request; a transport failure becomes a :class:`CommandError` in plain words (the
    full exception goes to the debug log)."""
    url = server.url.rstrip("/") + path
    headers = dict(server.headers)
    if body is not None:
        headers["Content-Type"] = "application/json"
    try:
        connector = aiohttp.TCPConnector(ssl=server.ssl)
        async with aiohttp.ClientSession(connector=connector) as session, session.request(
                method, url, params=params, headers=headers,
                data=orjson.dumps(body) if body is not None else None) as resp:
            return Answer(resp.status, await resp.read())
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.debug("%s %s failed: %r", method, url, exc)
        problem = connection_problem(exc)
        raise CommandError(f"cannot reach the {server.name} at {server.url}: {problem}") from exc


def document(server: Server, answer: Answer) -> JSON:
    """The JSON object of a successful answer; an error answer's message as a CommandError."""
    if answer.status >= 400:
        raise failure(server, answer)
    body = _object(answer.raw)
    if body is None:
        raise _stranger(server, answer)
    return body


def failure(server: Server, answer: Answer) -> CommandError:
    """The error an answer of status 400 or more stands for."""
    body = _object(answer.raw)
    if body is None or body.get("kind") != "Status":
        return _stranger(server, answer)
    return CommandError(str(body.get("message") or f"HTTP {answer.status}"))


def _object(raw: bytes) -> JSON | None:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


def _stranger(server: Server, answer: Answer) -> CommandError:
    return CommandError(f"{server.url} is not a {server.role} (HTTP {answer.status})")


async def get_json(server: Server, path: str, *, params: Mapping[str, str] | None = None) -> JSON:
    return document(server, await call(server, "GET", path, params=params))


async def get_text(server: Server, path: str, *, params: Mapping[str, str] | None = None) -> str:
    """A successful answer's body as text (CSV, for one); an error answer as a CommandError."""
    answer = await call(server, "GET", path, params=params)
    if answer.status >= 400:
        raise failure(server, answer)
    return answer.raw.decode("utf-8", "replace")


def run_command(work: Coroutine[Any, Any, str], *,
                failures: tuple[type[Exception], ...] = ()) -> int:
    """Run a command's coroutine and print the text it returns: exit code 0. A
    :class:`CommandError` (or one of ``failures``) is printed as one inert line: exit code 1."""
    caught: tuple[type[Exception], ...] = (CommandError, *failures)
    try:
        text = asyncio.run(work)
    except caught as exc:
        print(f"kubepedia: {printable(str(exc))}", file=sys.stderr)
        return 1
    print(text)
    return 0
