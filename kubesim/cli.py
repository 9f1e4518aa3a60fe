"""``kubesim serve`` and ``kubesim load``.

``serve --port 0`` (the default) listens on a port the kernel picks and reports it: the
first line on stdout is ``kubesim NAME serving on URL``, ``--port-file F`` writes the
port to F, and ``--kubeconfig-out`` points at it. Callers learn the port from the process
that holds it instead of picking a "free" one first, which another process may take
before kubesim binds it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

import orjson

from kubesim.generate import parse_counts
from kubesim.kubeconfig import write_kubeconfig
from kubesim.load import LoadGenerator
from kubesim.server import running
from kubesim.simulator import SimConfig


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubesim", description="Kubernetes API simulator")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve a simulated cluster")
    serve.add_argument("--port", type=int, default=0, help="0 (the default): any free port")
    serve.add_argument("--port-file", default="", help="write the bound port here once listening")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--name", default="kubesim")
    serve.add_argument("--generate", default="", help="e.g. pods=1000,deployments=50,nodes=10")
    serve.add_argument("--seed", type=int, default=0)
    serve.add_argument("--kubeconfig-out", default="")
    serve.add_argument("--bookmark-interval", type=float, default=60.0)
    serve.add_argument("--history-events", type=int, default=50_000)
    serve.add_argument("--history-seconds", type=float, default=300.0)
    serve.add_argument("--continue-ttl", type=float, default=300.0)
    serve.add_argument("--watch-queue", type=int, default=20_000)
    load = sub.add_parser("load", help="write realistic objects to a server")
    load.add_argument("--server", required=True)
    load.add_argument("--rate", type=float, default=100.0)
    load.add_argument("--duration", type=float, default=10.0)
    load.add_argument("--seed", type=int, default=0)
    load.add_argument("--concurrency", type=int, default=32)
    return parser


async def _serve(args: argparse.Namespace) -> None:
    config = SimConfig(
        name=args.name,
        bookmark_interval=args.bookmark_interval,
        history_max_events=args.history_events,
        history_seconds=args.history_seconds,
        continue_ttl=args.continue_ttl,
        watch_queue_max=args.watch_queue,
    )
    counts = parse_counts(args.generate) if args.generate else None
    async with running(args.port, args.host, generate=counts, seed=args.seed, config=config) as sim:
        if args.kubeconfig_out:
            write_kubeconfig(args.kubeconfig_out, sim.url, args.name)
        if args.port_file:
            write_port_file(Path(args.port_file), sim.port)
        print(f"kubesim {args.name} serving on {sim.url}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def write_port_file(path: Path, port: int) -> None:
    """Write the port whole under a temporary name, then rename: a caller polling for the
    file (it asked for port 0 and waits to learn the port) never reads half of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(f"{port}\n")
    os.replace(tmp, path)


async def _load(args: argparse.Namespace) -> None:
    gen = LoadGenerator(args.server, rate=args.rate, seed=args.seed, concurrency=args.concurrency)
    stats = await gen.run(args.duration)
    sys.stdout.write(orjson.dumps(stats.as_json()).decode() + "\n")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.command == "serve":
        asyncio.run(_serve(args))
    else:
        asyncio.run(_load(args))
    return 0
