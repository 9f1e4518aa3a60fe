"""Every ``kubepedia`` command but ``agent`` (see :mod:`kubepedia.cli`)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from agent.logs import setup_logging
from agent.tuning import tune_gc
from kube import configfile
from kube.configfile import ConfigError, from_env
from kubepedia import clusters, keys, kubeconfig, report
from kubepedia import history as history_command  # kubepedia history
from kubepedia.config import (
    DEFAULT_ADMIN_LISTEN,
    DEFAULT_API_LISTEN,
    DEFAULT_INGEST_LISTEN,
    default_data_dir,
    parse_duration,
    parse_listen,
)
from syncer.db import DatabaseUnreachable
from syncer.embedded import EmbeddedError
from syncer.migrations import SchemaTooNew
from syncer.registry import RegistryError
from syncer.secretbox import SecretBoxError


def _duration(value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _listen(value: str) -> tuple[str, int]:
    try:
        return parse_listen(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The parser, and the commands that take a config file (``kube.configfile``)."""
    parser = argparse.ArgumentParser(
        prog="kubepedia", description="One searchable, kubectl-compatible view of every Kubernetes cluster.")
    levels = ["debug", "info", "warning", "error"]
    from_env(parser.add_argument("--log-level", default="info", choices=levels), "KUBEPEDIA_LOG_LEVEL")
    sub = parser.add_subparsers(dest="command", required=True)
    configurable: dict[str, argparse.ArgumentParser] = {}
    for name, summary in (("serve", "run the syncer and the read API"),
                          ("demo", "run three simulated clusters, synced and served, for kubectl")):
        configurable[name] = sub.add_parser(name, help=summary)
        _serve_options(configurable[name])
    clusters.add_parser(sub)
    kubeconfig.add_parser(sub)
    keys.add_parser(sub)
    history_command.add_parser(sub)
    report.add_parser(sub)
    return parser, configurable


def _serve_options(serve: argparse.ArgumentParser) -> None:
    configfile.add_config_options(serve)
    from_env(serve.add_argument("--database-url", default=None,
                                help="PostgreSQL URL (default: an embedded server in the data dir)"),
             "KUBEPEDIA_DATABASE_URL")
    from_env(serve.add_argument("--data-dir", type=Path, default=default_data_dir()), "KUBEPEDIA_DATA_DIR")
    serve.add_argument("--api-listen", type=_listen, default=DEFAULT_API_LISTEN)
    serve.add_argument("--change-log-retention", type=_duration, default="7d", metavar="DURATION",
                       help="how long changes are kept for watches and history (default %(default)s)")
    serve.add_argument("--ingest-listen", type=_listen, default=DEFAULT_INGEST_LISTEN,
                       help="agents push here (default %(default)s)")
    serve.add_argument("--admin-listen", type=_listen, default=DEFAULT_ADMIN_LISTEN,
                       help="the registry's admin API, for `kubepedia cluster` (default %(default)s)")
    keys.add_key_file_argument(serve)
    allow = serve.add_argument(
        "--allow-kubeconfig-exec", action="store_true",
        help="let registered kubeconfigs run exec/auth-provider plugins and read files "
             "on this machine (only if everyone holding the admin token may run code here)")
    from_env(allow, ALLOW_EXEC_ENV)
    allow.default = _env_flag(ALLOW_EXEC_ENV)
    serve.add_argument("--shutdown-timeout", type=_duration, default="30s", metavar="DURATION",
                       help="on SIGTERM/SIGINT, how long in-flight requests, watches and writes may take"
                            " to finish (default %(default)s)")


ALLOW_EXEC_ENV = "KUBEPEDIA_ALLOW_KUBECONFIG_EXEC"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def _run_serve(args: argparse.Namespace) -> int:
    from kubepedia.demo import DemoError, demo
    from kubepedia.serve import ServeConfig, serve

    config = ServeConfig(database_url=args.database_url, data_dir=args.data_dir,
                         api_listen=args.api_listen, ingest_listen=args.ingest_listen,
                         admin_listen=args.admin_listen, secret_key_file=args.secret_key_file,
                         allow_kubeconfig_exec=args.allow_kubeconfig_exec,
                         change_log_retention_s=args.change_log_retention,
                         shutdown_timeout_s=args.shutdown_timeout)
    tune_gc()
    try:
        asyncio.run(demo(config) if args.command == "demo" else serve(config))
    except DemoError as exc:
        print(f"kubepedia: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser, configurable = _parser()
    try:
        args = configfile.parse_args(parser, argv, commands=configurable)
    except ConfigError as exc:
        print(f"kubepedia: {exc}", file=sys.stderr)
        return 2
    if args.command in configurable and args.print_config:
        print(configfile.effective(args, [configurable[args.command], parser]), end="")
        return 0
    setup_logging(args.log_level)
    if args.command == "kubeconfig":
        return kubeconfig.run(args)
    if args.command == "cluster":
        return clusters.run(args)
    if args.command == "keys":
        return keys.run(args)
    if args.command == "history":
        return history_command.run(args)
    if args.command == "report":
        return report.run(args)
    try:
        return _run_serve(args)
    except (DatabaseUnreachable, SchemaTooNew, EmbeddedError, SecretBoxError, RegistryError,
            OSError) as exc:  # OSError: address in use
        print(f"kubepedia: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
