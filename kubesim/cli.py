"""``kubesim serve`` and ``kubesim load``.

``serve --port 0`` (the default) listens on a port the kernel picks and reports it: the
first line on stdout is ``kubesim NAME serving on URL``, ``--port-file F`` writes the
port to F, and ``--kubeconfig-out`` points at it. Callers learn the port from the process
that holds it instead of picking a "free" one first, which another process may take
before kubesim binds it.

``serve --clusters N`` serves N independent clusters (``NAME-0`` ... on a port each, see
:mod:`kubesim.clusters`): one stdout line per cluster in order, one port per line in
``--port-file``, a context per cluster in ``--kubeconfig-out``, ``NAME.kubeconfig`` per
cluster in ``--kubeconfig-dir`` and a JSON listing in ``--listing-out``. Every file is
written whole (under a temporary name, then renamed) once every cluster listens.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import orjson

from kubesim.churn import MAX_RATE
from kubesim.clusters import MAX_CLUSTERS, running_clusters
from kubesim.generate import cluster_counts, parse_counts
from kubesim.kubeconfig import write_kubeconfig_for
from kubesim.load import LoadGenerator
from kubesim.server import SimServer
from kubesim.simulator import SimConfig
from kubesim.tokenreview import TokenTable


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubesim", description="Kubernetes API simulator")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve a simulated cluster")
    serve.add_argument("--port", type=int, default=0,
                       help="0 (the default): any free port; with --clusters N: ports P..P+N-1")
    serve.add_argument("--port-file", default="", help="write the bound port(s) here once listening")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--name", default="kubesim")
    serve.add_argument("--clusters", type=int, default=1,
                       help="serve this many independent clusters, one port each")
    serve.add_argument("--generate", default="", help="e.g. pods=1000,deployments=50,nodes=10")
    serve.add_argument("--objects-per-cluster", type=int, default=0,
                       help="about N objects in each cluster, mostly pods (instead of --generate)")
    serve.add_argument("--seed", type=int, default=0)
    serve.add_argument("--churn", type=float, default=0.0,
                       help="pod writes per second each cluster makes itself")
    serve.add_argument("--kubeconfig-out", default="", help="a kubeconfig with a context per cluster")
    serve.add_argument("--kubeconfig-dir", default="", help="write NAME.kubeconfig per cluster here")
    serve.add_argument("--listing-out", default="",
                       help="write the clusters' names, URLs, ports and kubeconfigs here (JSON)")
    serve.add_argument("--bookmark-interval", type=float, default=60.0)
    serve.add_argument("--history-events", type=int, default=50_000)
    serve.add_argument("--history-seconds", type=float, default=300.0)
    serve.add_argument("--continue-ttl", type=float, default=300.0)
    serve.add_argument("--watch-queue", type=int, default=20_000)
    serve.add_argument("--tokens", type=Path, default=None,
                       help="tokens TokenReview authenticates, in every cluster: kube-apiserver's "
                            'token file format, token,user[,uid[,"group1,group2"]]')
    load = sub.add_parser("load", help="write realistic objects to a server")
    load.add_argument("--server", required=True)
    load.add_argument("--rate", type=float, default=100.0)
    load.add_argument("--duration", type=float, default=10.0)
    load.add_argument("--seed", type=int, default=0)
    load.add_argument("--concurrency", type=int, default=32)
    return parser


def _counts(args: argparse.Namespace) -> dict[str, int] | None:
    if args.objects_per_cluster:
        return cluster_counts(args.objects_per_cluster)
    return parse_counts(args.generate) if args.generate else None


def _tokens(parser: argparse.ArgumentParser, path: Path | None) -> TokenTable:
    table = TokenTable()
    if path is not None:
        try:
            table.load_file(path)
        except (OSError, ValueError) as exc:
            parser.error(f"--tokens: {exc}")
    return table


async def _serve(args: argparse.Namespace, tokens: TokenTable) -> None:
    config = SimConfig(
        name=args.name,
        bookmark_interval=args.bookmark_interval,
        history_max_events=args.history_events,
        history_seconds=args.history_seconds,
        continue_ttl=args.continue_ttl,
        watch_queue_max=args.watch_queue,
    )
    async with running_clusters(
        args.clusters, args.host, port=args.port, generate=_counts(args), seed=args.seed,
        config=config, churn=args.churn,
    ) as servers:
        for server in servers:
            server.tokens.update(tokens)
        write_outputs(args, servers)
        for server in servers:
            print(f"kubesim {server.sim.config.name} serving on {server.url}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def write_outputs(args: argparse.Namespace, servers: list[SimServer]) -> None:
    """The files that tell callers where the clusters listen."""
    named = [(server.sim.config.name, server.url) for server in servers]
    kubeconfigs: dict[str, str] = {}
    if args.kubeconfig_dir:
        directory = Path(args.kubeconfig_dir)
        directory.mkdir(parents=True, exist_ok=True)
        for name, url in named:
            path = directory / f"{name}.kubeconfig"
            write_whole(path, partial(write_kubeconfig_for, clusters=[(name, url)]))
            kubeconfigs[name] = str(path.resolve())
    if args.kubeconfig_out:
        write_whole(Path(args.kubeconfig_out), partial(write_kubeconfig_for, clusters=named))
    if args.port_file:
        write_port_file(Path(args.port_file), *(server.port for server in servers))
    if args.listing_out:
        listing = [
            {"name": server.sim.config.name, "url": server.url, "port": server.port,
             **({"kubeconfig": kubeconfigs[name]} if name in kubeconfigs else {})}
            for server, (name, _) in zip(servers, named, strict=True)
        ]
        data = orjson.dumps({"clusters": listing}, option=orjson.OPT_INDENT_2) + b"\n"
        write_whole(Path(args.listing_out), lambda tmp: tmp.write_bytes(data))


def write_whole(path: Path, write: Callable[[Path], object]) -> None:
    """Write under a temporary name, then rename: a caller polling for the file (it asked
    for port 0 and waits to learn the port) never reads half of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def write_port_file(path: Path, *ports: int) -> None:
    write_whole(path, lambda tmp: tmp.write_text("".join(f"{port}\n" for port in ports)))


async def _load(args: argparse.Namespace) -> None:
    gen = LoadGenerator(args.server, rate=args.rate, seed=args.seed, concurrency=args.concurrency)
    stats = await gen.run(args.duration)
    sys.stdout.write(orjson.dumps(stats.as_json()).decode() + "\n")


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.command != "serve":
        return
    if not 1 <= args.clusters <= MAX_CLUSTERS:
        parser.error(f"--clusters must be from 1 to {MAX_CLUSTERS}")
    if args.generate and args.objects_per_cluster:
        parser.error("--generate and --objects-per-cluster exclude each other")
    if args.objects_per_cluster < 0:
        parser.error("--objects-per-cluster must not be negative")
    if not 0 <= args.churn <= MAX_RATE:
        parser.error(f"--churn must be from 0 to {MAX_RATE:g} writes per second")
    if args.port and args.port + args.clusters - 1 > 65535:
        parser.error("--port and --clusters reach past port 65535")
    try:
        _counts(args)
    except ValueError as exc:
        parser.error(str(exc))


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _check(parser, args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.command == "serve":
        asyncio.run(_serve(args, _tokens(parser, args.tokens)))
    else:
        asyncio.run(_load(args))
    return 0
