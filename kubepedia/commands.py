"""Every ``kubepedia`` command but ``agent`` (see :mod:`kubepedia.cli`)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from agent.errors import KubeClientError
from agent.logs import setup_logging
from agent.tuning import tune_gc
from apiserver.limits import DEFAULT_MAX_WATCHES_PER_SUBJECT
from apiserver.reloading import FileProblem
from kube import configfile
from kube.configfile import ConfigError, from_env
from kubepedia import clusters, inspect, keys, kubeconfig, report
from kubepedia import history as history_command  # kubepedia history
from kubepedia.config import (
    DEFAULT_ADMIN_LISTEN,
    DEFAULT_API_LISTEN,
    DEFAULT_INGEST_LISTEN,
    default_data_dir,
    parse_duration,
    parse_listen,
)
from kubepedia.tls import TlsError, tls_files
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


def _duration_or_off(value: str) -> float:
    """A duration, or 0 (``0``, ``0s``, ``0m``...) for "never"."""
    text = value.strip().lower()
    if text.rstrip("dhms") in ("0", "0.0") and len(text) - len(text.rstrip("dhms")) <= 1:
        return 0.0
    return _duration(value)


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive integer")
    return int(value)


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
    _role_options(configurable["serve"])
    _tls_options(configurable["serve"])
    clusters.add_parser(sub)
    kubeconfig.add_parser(sub)
    keys.add_parser(sub)
    history_command.add_parser(sub)
    report.add_parser(sub)
    inspect.add_parser(sub)
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
    serve.add_argument("--read-timeout", type=_duration, default="30s", metavar="DURATION",
                       help="the read API's statement timeout on every query; past it a request is"
                            " answered 504 Timeout (default %(default)s)")
    serve.add_argument("--max-watches-per-subject", type=_positive, default=DEFAULT_MAX_WATCHES_PER_SUBJECT,
                       metavar="N", help="open watches one caller may have on this server; past it"
                                         " a watch is answered 429 with Retry-After (default %(default)s)")
    serve.add_argument("--inspect-every", type=_duration_or_off, default="10m", metavar="DURATION",
                       help="run the inspections this often in the syncer; 0 never (default %(default)s)")
    serve.add_argument("--inspect-retention", type=_duration, default="30d", metavar="DURATION",
                       help="how long inspection runs are kept (default %(default)s)")
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
    access = serve.add_argument_group("read API access (without these, only the read token in the data dir)")
    access.add_argument("--token-file", type=Path, default=None,
                        help="bearer tokens of the read API's callers, one CSV line each: "
                             'token,user[,uid[,"group1,group2"]] (reloaded on change)')
    access.add_argument("--grants-file", type=Path, default=None,
                        help="YAML: the clusters, namespaces and resources each user or group may read "
                             "(reloaded on change)")
    access.add_argument("--token-review-kubeconfig", type=Path, default=None,
                        help="a host cluster that authenticates other tokens (TokenReview)")
    access.add_argument("--api-plain-http", action="store_true",
                        help="serve the read API without TLS, even with --tls-cert (kubectl sends no "
                             "token to it then); without either, it serves a self-signed certificate "
                             "made in the data dir")
    access.add_argument("--anonymous-read", action="store_true",
                        help="let requests without a token in, as system:anonymous (what the grants "
                             "file gives it or group system:unauthenticated)")


ALLOW_EXEC_ENV = "KUBEPEDIA_ALLOW_KUBECONFIG_EXEC"


def _role_options(serve: argparse.ArgumentParser) -> None:
    from kubepedia.serve import ROLES

    serve.add_argument("--role", choices=ROLES, default="all",
                       help="what this process runs: the read API, the syncer (ingest and admin "
                            "listeners, pull mode), or both (default %(default)s)")
    # --print-config shows each URL without its password, as it shows --database-url.
    serve.add_argument(
        "--read-database-url", action="append", default=[], metavar="URL",
        help="a PostgreSQL streaming replica the read API reads from (repeat for several; "
             "roles api and all; see docs/replicas.md); writes stay on --database-url")


def _tls_options(serve: argparse.ArgumentParser) -> None:
    tls = serve.add_argument_group("TLS (every listener; see docs/tls.md)")
    tls.add_argument("--tls-cert", type=Path, default=None, metavar="FILE",
                     help="serve HTTPS with this PEM certificate (then any intermediates)")
    tls.add_argument("--tls-key", type=Path, default=None, metavar="FILE",
                     help="the certificate's PEM private key, unencrypted")
    tls.add_argument("--client-ca", type=Path, default=None, metavar="FILE",
                     help="verify client certificates against this PEM CA: required by the read "
                          "API, optional beside the tokens of the ingest and admin listeners")


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def _run_serve(args: argparse.Namespace) -> int:
    from kubepedia.demo import DemoError, demo
    from kubepedia.serve import ServeConfig, serve

    tls = tls_files(cert=getattr(args, "tls_cert", None), key=getattr(args, "tls_key", None),
                    client_ca=getattr(args, "client_ca", None))
    config = ServeConfig(database_url=args.database_url, data_dir=args.data_dir,
                         api_listen=args.api_listen, ingest_listen=args.ingest_listen,
                         admin_listen=args.admin_listen, secret_key_file=args.secret_key_file,
                         allow_kubeconfig_exec=args.allow_kubeconfig_exec,
                         change_log_retention_s=args.change_log_retention,
                         role=getattr(args, "role", "all"), tls=tls,
                         read_database_urls=tuple(getattr(args, "read_database_url", None) or ()),
                         read_timeout_s=args.read_timeout,
                         max_watches_per_subject=args.max_watches_per_subject,
                         shutdown_timeout_s=args.shutdown_timeout,
                         inspect_every_s=args.inspect_every, inspect_retention_s=args.inspect_retention,
                         token_file=args.token_file, grants_file=args.grants_file,
                         token_review_kubeconfig=args.token_review_kubeconfig,
                         anonymous_read=args.anonymous_read, api_plain_http=args.api_plain_http)
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
    if args.command == "inspect":
        return inspect.run(args)
    try:
        return _run_serve(args)
    except (DatabaseUnreachable, SchemaTooNew, EmbeddedError, SecretBoxError, RegistryError,
            FileProblem, KubeClientError, TlsError, OSError) as exc:  # OSError: address in use
        print(f"kubepedia: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
