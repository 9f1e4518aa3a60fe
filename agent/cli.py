"""``kubepedia agent``: sync one member cluster into a syncer.

    kubepedia agent --cluster NAME --syncer URL --token TOKEN [--syncer-ca FILE]
                    [--kubeconfig F] [--context C] [--config F] [--log-level L]
                    [--metrics-listen HOST:PORT] [--shutdown-timeout SECONDS]

The token may come from ``$KUBEPEDIA_AGENT_TOKEN`` instead (keeps it out of ``ps``). An https
syncer's certificate is verified against ``--syncer-ca`` (or ``$KUBEPEDIA_SYNCER_CA``), else
against the system's trust store; there is no way to turn verification off (a self-signed
certificate is its own CA: pass it as ``--syncer-ca``).
Without ``--kubeconfig`` the agent uses the in-cluster service account when it runs in a
pod, else ``$KUBECONFIG`` or ``~/.kube/config``.

On SIGTERM or SIGINT the agent stops watching, delivers what it holds to the syncer (for at
most ``--shutdown-timeout`` seconds), and exits 0. ``--metrics-listen`` serves Prometheus
metrics (``agent.metrics``); without it no port is opened.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

from agent import metrics
from agent.errors import KubeClientError
from agent.kubeclient import Connection, KubeClient, load_connection
from agent.logs import setup_logging
from agent.push import HttpSink
from agent.runner import Runner
from agent.selection import Selection, SelectionError, load_selection
from agent.tls import TlsError, client_context
from agent.tuning import tune_gc
from kube.tasks import STOP_TIMEOUT_S, stop_tasks

logger = logging.getLogger("agent")
TOKEN_ENV = "KUBEPEDIA_AGENT_TOKEN"
SYNCER_CA_ENV = "KUBEPEDIA_SYNCER_CA"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubepedia agent", description=__doc__.split("\n")[0])
    parser.add_argument("--cluster", required=True, help="this cluster's name in kubepedia")
    parser.add_argument("--syncer", required=True, help="the syncer's ingest URL")
    parser.add_argument("--token", default=None, help=f"cluster token (or ${TOKEN_ENV})")
    parser.add_argument("--syncer-ca", type=Path, default=None, metavar="FILE",
                        help=f"PEM CA that signed the https syncer's certificate (or ${SYNCER_CA_ENV}; "
                             "default: the system's trust store)")
    parser.add_argument("--kubeconfig", default=None)
    parser.add_argument("--context", default=None)
    parser.add_argument("--config", default=None, help="selection YAML file")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--metrics-listen", type=_listen, default=None, metavar="HOST:PORT",
                        help="serve Prometheus metrics here (default: off)")
    parser.add_argument("--shutdown-timeout", type=float, default=30.0, metavar="SECONDS",
                        help="on SIGTERM, how long to deliver what the agent holds (default %(default)s)")
    rules = parser.add_argument_group("selection (override the --config file)")
    rules.add_argument("--include", action="append", help="resource pattern, repeatable")
    rules.add_argument("--exclude", action="append", help="resource pattern, repeatable")
    rules.add_argument("--namespace", action="append", help="only these namespaces")
    rules.add_argument("--exclude-namespace", action="append", help="namespace pattern")
    rules.add_argument("--keep-secret-data", action="store_true", default=None)
    rules.add_argument("--no-custom-resources", action="store_true", default=None)
    rules.add_argument("--discovery-interval", type=float, default=None, help="seconds")
    return parser


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def selection_from(args: argparse.Namespace) -> Selection:
    return load_selection(args.config).overridden(
        include=_tuple(args.include),
        exclude=_tuple(args.exclude),
        namespaces_include=_tuple(args.namespace),
        namespaces_exclude=_tuple(args.exclude_namespace),
        keep_secret_data=args.keep_secret_data,
        custom_resources=False if args.no_custom_resources else None,
        discovery_refresh=args.discovery_interval,
    )


def _tuple(values: list[str] | None) -> tuple[str, ...] | None:
    return tuple(values) if values else None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    token = args.token or os.environ.get(TOKEN_ENV)
    if not token:
        logger.error(f"no token: pass --token or set ${TOKEN_ENV}")
        return 2
    try:
        syncer_ca = args.syncer_ca or _env_path(SYNCER_CA_ENV)
        verify = client_context(args.syncer, ca=syncer_ca, ca_flag="--syncer-ca")
        selection = selection_from(args)
        connection = load_connection(kubeconfig=args.kubeconfig, context=args.context)
    except (SelectionError, KubeClientError, TlsError) as exc:
        logger.error(str(exc))
        return 2
    tune_gc()
    asyncio.run(_serve(args, token=token, selection=selection, connection=connection, verify=verify))
    return 0


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value) if value else None


async def _serve(
    args: argparse.Namespace, *, token: str, selection: Selection, connection: Connection,
    verify: ssl.SSLContext | bool,
) -> None:
    async with (
        KubeClient(connection=connection) as client,
        HttpSink(base_url=args.syncer, cluster=args.cluster, token=token, ssl=verify) as sink,
        contextlib.AsyncExitStack() as stack,
    ):
        if args.metrics_listen is not None:
            await stack.enter_async_context(metrics.serving(*args.metrics_listen))
        runner = Runner(client=client, sink=sink, selection=selection)
        metrics.IN_FLIGHT.set_function(lambda: runner.budget.used)
        metrics.TYPES.set_function(lambda: len(runner.types))
        task = asyncio.create_task(runner.run(), name="agent")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        logger.info(
            "agent started",
            extra={"cluster": args.cluster, "syncer": args.syncer, "server": client.connection.server},
        )
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            logger.info("shutting down: delivering what the agent holds", extra={"cluster": args.cluster})
            await runner.drain(timeout=args.shutdown_timeout)
        await stop_tasks([task, stopping], timeout=STOP_TIMEOUT_S, log=logger)
        logger.info("agent stopped", extra={"cluster": args.cluster})


if __name__ == "__main__":
    sys.exit(main())
