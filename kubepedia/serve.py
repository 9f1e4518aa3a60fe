"""``kubepedia serve``: the syncer's ingest and admin listeners and the read API in one process,
or one of the two parts (``--role``) so that each runs as its own Deployment.

The read API keeps no state of its own (every process sharing a database accepts the others'
continue tokens, and watches follow the change log), so it runs with any number of replicas.
The syncer holds the key file and the admin token; pull mode's ownership locks decide which
of its replicas syncs which cluster. An API-only process needs neither: it opens no key file
and writes nothing into the data dir unless the embedded PostgreSQL lives there.

Shutdown (SIGTERM or SIGINT) goes in order, each step bounded by ``--shutdown-timeout``:
every listener stops accepting connections first; requests in flight are answered, ingest
batches among them (a batch commits with its checkpoint); pull mode stops its informers
and lets the store calls under way commit (``syncer.sink``), so every cluster resumes
from its checkpoint, without a relist, on the next start; then the read API's watches are
sent the changes that committed and, if they asked for bookmarks, a last BOOKMARK with the
sequence they have seen everything up to, and end cleanly (``apiserver.watch``); the pools
close; the embedded PostgreSQL stops last (``pg_ctl -m fast``, which writes a shutdown
checkpoint).

The read API authenticates its callers by bearer token and serves each what the grants give
it (``apiserver.access``). A process that owns the data dir (the syncer's, or the embedded
PostgreSQL's) makes a read token there that reads everything, and serves the read API over
TLS with a certificate it makes there when no ``--tls-cert`` is given (kubectl sends tokens
to https servers only). An API-only process writes neither: it needs ``--tls-cert`` (or
``--api-plain-http``), and uses the read token only if the syncer made one where it looks.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aiohttp import web

from agent.kubeclient import load_connection
from apiserver.access import Access, CombinedGrants, GrantsFile, GrantsSource
from apiserver.app import build_app as build_api_app
from apiserver.auth import Authenticator, StaticTokens, TokenFile, TokenReviewer
from apiserver.grants import User, everything_for
from apiserver.inspection_runs import Retention, schedule
from apiserver.limits import DEFAULT_MAX_WATCHES_PER_SUBJECT, DEFAULT_READ_TIMEOUT_S
from kube.tasks import STOP_TIMEOUT_S, stop_tasks
from kubepedia.config import ensure_admin_token, ensure_read_token, stored_read_token
from kubepedia.tls import ServerContexts, TlsError, TlsFiles, ensure_certificate, server_contexts
from syncer import datadir, embedded, registry, secretbox
from syncer.admin import build_admin_app
from syncer.db import connect, create_pool, describe
from syncer.migrations import migrate
from syncer.registry import Kubeconfigs
from syncer.server import SERVER_SETTINGS as INGEST_SERVER_SETTINGS
from syncer.server import build_app as build_ingest_app

log = logging.getLogger(__name__)

Role = Literal["all", "api", "syncer"]
ROLES: tuple[Role, ...] = ("all", "api", "syncer")


@dataclass(frozen=True, kw_only=True, slots=True)
class ServeConfig:
    database_url: str | None
    data_dir: Path
    api_listen: tuple[str, int]
    ingest_listen: tuple[str, int]
    admin_listen: tuple[str, int]
    secret_key_file: Path | None = None  # default: secret.keys in the data dir
    allow_kubeconfig_exec: bool = False
    change_log_retention_s: float = 7 * 24 * 3600.0
    role: Role = "all"
    tls: TlsFiles | None = None  # None: plain HTTP, but for the read API (see api_plain_http)
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S  # every read query's statement timeout (504 past it)
    max_watches_per_subject: int = DEFAULT_MAX_WATCHES_PER_SUBJECT  # 429 past it
    inspect_every_s: float = 600.0  # the syncer runs the inspections this often; 0: never
    inspect_retention_s: float = 30 * 24 * 3600.0  # inspection runs older than this are deleted
    read_database_urls: tuple[str, ...] = ()  # streaming replicas the read API reads from
    token_file: Path | None = None  # the read API's callers (kube-apiserver's token file format)
    grants_file: Path | None = None  # what they may read (apiserver.grants)
    token_review_kubeconfig: Path | None = None  # a host cluster that reviews other tokens
    anonymous_read: bool = False  # requests without a token read as system:anonymous
    api_plain_http: bool = False  # the read API without TLS (kubectl then sends no token)

    @property
    def runs_api(self) -> bool:
        return self.role in ("all", "api")

    @property
    def runs_syncer(self) -> bool:
        return self.role in ("all", "syncer")
    shutdown_timeout_s: float = 30.0

    @property
    def owns_data_dir(self) -> bool:
        """Whether this process makes and writes the data dir."""
        return self.runs_syncer or self.embedded_server

    @property
    def key_file(self) -> Path:
        return self.secret_key_file or self.data_dir / secretbox.KEY_FILE_NAME

    @property
    def embedded_server(self) -> bool:
        return not self.database_url


@asynccontextmanager
async def database(config: ServeConfig) -> AsyncIterator[str]:
    """The database URL to use, running the embedded server when none is given."""
    if config.database_url:
        yield config.database_url
        return
    async with embedded.running(config.data_dir) as pg:
        yield pg.url


def make_data_dir(config: ServeConfig) -> None:
    """The data dir, made before anything is written into it, fit for the embedded PostgreSQL
    when that will live there (see ``syncer.datadir``)."""
    datadir.make(config.data_dir, embedded_server=config.embedded_server)


def open_kubeconfigs(config: ServeConfig) -> Kubeconfigs:
    """The key file (created with one key on first start) and the kubeconfig policy. An
    unsafe key file stops the start here, before anything else runs."""
    if secretbox.create_key_file(config.key_file):
        log.info("secret key file created", extra={"path": str(config.key_file)})
    kubeconfigs = Kubeconfigs(box=secretbox.SecretBox(config.key_file),
                              allow_local=config.allow_kubeconfig_exec)
    if kubeconfigs.allow_local:
        log.warning("registered kubeconfigs may run commands (exec, auth-provider) and read files on "
                    "this machine as this user (--allow-kubeconfig-exec): whoever holds the admin "
                    "token can run code here")
    return kubeconfigs


async def prepare_store(url: str, kubeconfigs: Kubeconfigs | None) -> None:
    """Migrate (serialized by the migration lock, so replicas may start together); with
    ``kubeconfigs`` (the syncer), seal stored kubeconfigs still in clear."""
    conn = await connect(url)
    try:
        before = await migrate(conn)
        sealed = None if kubeconfigs is None else await registry.prepare_kubeconfigs(conn, kubeconfigs)
    finally:
        await conn.close()
    if sealed is not None and sealed.resealed:
        log.info("kubeconfigs stored in clear are now sealed", extra={"clusters": sealed.resealed})
    log.info("store ready", extra={"database": describe(url), "schema_was": before})


# The data dir's read token: every object of every cluster, Secrets included (whoever can
# read the data dir can read the database too).
READ_ALL = User(name="kubepedia:read-all")


def read_access(config: ServeConfig) -> Access:
    """Who may call the read API and what each may read: the data dir's read token (all of
    it), the token file's and the host cluster's users (what the grants file gives them)
    and, with ``anonymous_read``, callers without a token (what it gives system:anonymous)."""
    authenticators: list[Authenticator] = []
    read_token = (ensure_read_token(config.data_dir) if config.owns_data_dir
                  else stored_read_token(config.data_dir))
    if read_token:
        authenticators.append(StaticTokens({read_token: READ_ALL}))
    if config.token_file is not None:
        authenticators.append(TokenFile(config.token_file))
    if config.token_review_kubeconfig is not None:
        host = load_connection(kubeconfig=str(config.token_review_kubeconfig))
        authenticators.append(TokenReviewer(server=host.server, ssl=host.ssl, auth_headers=host.auth_headers))
    if not authenticators and not config.anonymous_read:
        log.warning("the read API knows no token: give --token-file, --token-review-kubeconfig "
                    "or --anonymous-read, or every request but /healthz, /readyz, /version is a 401")
    sources: list[GrantsSource] = [everything_for([READ_ALL.name])]
    if config.grants_file is not None:
        sources.append(GrantsFile(config.grants_file))
    return Access(authenticators=authenticators, grants=CombinedGrants(*sources),
                  anonymous=config.anonymous_read)


def api_tls(config: ServeConfig, tls: ServerContexts | None) -> ssl.SSLContext | None:
    """The read API's TLS context: ``--tls-cert``'s, else (for a process that owns the data
    dir) a self-signed certificate made there; None with ``--api-plain-http``."""
    if config.api_plain_http:
        return None
    if tls is not None:
        return tls.api
    if not config.owns_data_dir:
        raise TlsError("--role api serves the read API over TLS: give --tls-cert and --tls-key "
                       "(or --api-plain-http, and kubectl will send no token)")
    return server_contexts(ensure_certificate(config.data_dir, config.api_listen[0])).api


@dataclass(frozen=True, kw_only=True, slots=True)
class Running:
    """A running server: its database and the URLs its listeners are bound to ("" for a
    listener its role does not run)."""

    database_url: str
    ingest: str = ""
    admin: str = ""
    api: str = ""


async def _start_site(runners: list[web.AppRunner], app: web.Application, listen: tuple[str, int],
                      what: str, *, tls: ssl.SSLContext | None, shutdown_timeout: float,
                      **settings: Any) -> str:
    """Serve ``app`` (over TLS with ``tls``); returns the bound URL (with port 0 the kernel
    picks the port)."""
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=shutdown_timeout, **settings)
    await runner.setup()
    runners.append(runner)
    site = web.TCPSite(runner, listen[0], listen[1], ssl_context=tls)
    await site.start()
    host, port = runner.addresses[0][:2]
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    scheme = "https" if tls is not None else "http"
    log.info("listening", extra={"listener": what, "address": address, "scheme": scheme})
    return f"{scheme}://{address}"


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (Ctrl-C stops everything in order)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def serve(config: ServeConfig) -> None:
    stop = stop_on_signals()
    async with running(config):
        await stop.wait()
        log.info("shutting down")


@asynccontextmanager
async def running(config: ServeConfig) -> AsyncIterator[Running]:
    """What the role runs, for the block: the syncer (ingest, admin), the read API, or both;
    then the shutdown of the module docstring. TLS files that cannot be used stop the start
    first (``kubepedia.tls.TlsError``)."""
    tls: ServerContexts | None = server_contexts(config.tls) if config.tls is not None else None
    if config.owns_data_dir:
        make_data_dir(config)
    kubeconfigs = open_kubeconfigs(config) if config.runs_syncer else None
    timeout = config.shutdown_timeout_s
    # A bad token or grants file, or a missing certificate, stops the start here.
    access, api_context = (read_access(config), api_tls(config, tls)) if config.runs_api else (None, None)
    async with database(config) as url, AsyncExitStack() as stack:
        await prepare_store(url, kubeconfigs)
        runners: list[web.AppRunner] = []
        stack.push_async_callback(_shut_down, runners)
        urls: dict[str, str] = {}
        # The read API first, so that it stops last: its watches' last bookmarks then cover
        # every write the ingest listener took in.
        if access is not None:
            api = build_api_app(database_url=url, access=access, read_database_urls=config.read_database_urls,
                                read_timeout_s=config.read_timeout_s,
                                max_watches_per_subject=config.max_watches_per_subject)
            urls["api"] = await _start_site(runners, api, config.api_listen, "api", tls=api_context,
                                            shutdown_timeout=timeout)
        if kubeconfigs is not None:
            urls.update(await _start_syncer(runners, config, url, kubeconfigs,
                                            tls=tls.tokens if tls is not None else None))
            if config.inspect_every_s > 0:
                await stack.enter_async_context(_inspecting(url, config))
        yield Running(database_url=url, **urls)


@asynccontextmanager
async def _inspecting(url: str, config: ServeConfig) -> AsyncIterator[None]:
    """The inspections' schedule, on a connection of its own (a run holds it for its
    transaction). Every syncer replica keeps the schedule; runs are shared, not doubled
    (``apiserver.inspection_runs.run_scheduled``)."""
    pool = await create_pool(url, min_size=1, max_size=1, staging=False)
    retention = Retention(max_age_s=config.inspect_retention_s)
    task = asyncio.create_task(schedule(pool, every_s=config.inspect_every_s, retention=retention),
                               name="inspections")
    try:
        yield
    finally:
        await stop_tasks([task], timeout=STOP_TIMEOUT_S, log=log)
        await pool.close()


async def _start_syncer(runners: list[web.AppRunner], config: ServeConfig, url: str,
                        kubeconfigs: Kubeconfigs, *, tls: ssl.SSLContext | None) -> dict[str, str]:
    timeout = config.shutdown_timeout_s
    ingest = build_ingest_app(database_url=url, kubeconfigs=kubeconfigs,
                              retention_s=config.change_log_retention_s)
    ingest_url = await _start_site(runners, ingest, config.ingest_listen, "ingest", tls=tls,
                                   shutdown_timeout=timeout, **INGEST_SERVER_SETTINGS)
    # After the ingest application, whose pool and pull manager it shares.
    admin = build_admin_app(ingest, admin_token=ensure_admin_token(config.data_dir))
    admin_url = await _start_site(runners, admin, config.admin_listen, "admin", tls=tls,
                                  shutdown_timeout=timeout)
    return {"ingest": ingest_url, "admin": admin_url}


async def _shut_down(runners: list[web.AppRunner]) -> None:
    """No listener accepts any more; then each application ends, the last started first
    (the admin API, ingest, whose pool and pull manager the admin API borrows, then the read
    API): its requests and watches finish, then its pools and tasks close."""
    for runner in runners:
        for site in list(runner.sites):
            await site.stop()
    for runner in reversed(runners):
        await runner.cleanup()
    log.info("stopped")
