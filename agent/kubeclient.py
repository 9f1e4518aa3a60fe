"""A small asyncio client for one member cluster's API.

Credentials come from the operator's kubeconfig or the pod's service account
(https://kubernetes.io/docs/tasks/run-application/access-api-from-pod/): bearer tokens and
token files, client certificates, user names and passwords, CA data or files,
``insecure-skip-tls-verify`` and ``tls-server-name`` are read by :mod:`agent.credentials`;
what needs a plugin (exec credential plugins, OIDC and other auth providers) and a
``$KUBECONFIG`` naming several files go through the ``kubernetes`` package's own loaders,
which cost 18 MB of memory and are only imported then. Either way this module turns them
into what aiohttp needs: a base URL, an ``ssl.SSLContext`` and an ``Authorization``
header. That holds for the operator's own kubeconfig file (``load_connection``); a
kubeconfig handed over as a document by someone else (``connection_from_document``) is held
to inline credentials unless the caller allows more (see ``agent.kubeconfig_policy``).

Tokens expire (exec plugins and OIDC report an expiry; projected service-account tokens
rotate on disk), so the header is re-derived (through the loader's refresh hook, or by
reading the service account's token again) at most every ``refresh_interval`` seconds and
immediately after a 401.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import ssl
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import aiohttp
import orjson

from agent import credentials, errors, kubeconfig_policy
from agent.jsonlines import LineSplitter

logger = logging.getLogger(__name__)

SSLArg = ssl.SSLContext | Literal[False]
READ_CHUNK = 64 * 1024  # bytes of a watch stream taken at once
READ_BUFFER = 16 * 1024


class Connection:
    """Where a cluster's API is and how to authenticate to it."""

    def __init__(
        self,
        *,
        server: str,
        ssl_context: SSLArg,
        token: str | None = None,
        authorization: str | None = None,
        refresh: Callable[[], str | None] | None = None,
        server_hostname: str | None = None,
        refresh_interval: float = 30.0,
    ) -> None:
        """``authorization`` is the header's whole value (``token`` makes it ``Bearer
        token``); ``refresh`` derives it again (it may block: it runs in a thread)."""
        self.server = server.rstrip("/")
        self.ssl: SSLArg = ssl_context
        self.server_hostname = server_hostname
        self._refresh = refresh
        self._header = authorization or (f"Bearer {token}" if token else None)
        self._refreshed_at = time.monotonic() if self._header else 0.0
        self._refresh_interval = refresh_interval
        self._lock = asyncio.Lock()

    @classmethod
    def plain(cls, server: str, *, token: str | None = None) -> Connection:
        """A connection without a kubeconfig (tests, local simulators)."""
        return cls(server=server, ssl_context=False, token=token)

    async def auth_headers(self, *, force: bool = False) -> dict[str, str]:
        """The ``Authorization`` header, refreshed when due or when ``force``d (after 401)."""
        if self._refresh is not None:
            due = time.monotonic() - self._refreshed_at > self._refresh_interval
            if force or due or self._header is None:
                async with self._lock:
                    # Exec plugins run a subprocess: keep it off the event loop.
                    self._header = await asyncio.to_thread(self._refresh)
                    self._refreshed_at = time.monotonic()
        return {"Authorization": self._header} if self._header else {}


def load_connection(*, kubeconfig: str | None = None, context: str | None = None) -> Connection:
    """Load a kubeconfig file (or ``$KUBECONFIG``/``~/.kube/config``), or the in-cluster
    service account when no kubeconfig is given and the agent runs in a pod."""
    if kubeconfig is None and credentials.SERVICE_HOST in os.environ:
        try:
            return connection_from_credentials(credentials.in_cluster())
        except (credentials.CredentialsError, OSError, ValueError) as exc:
            raise errors.KubeClientError(f"cannot load in-cluster config: {exc}") from exc
    paths = credentials.kubeconfig_paths(kubeconfig)
    if len(paths) == 1:
        try:
            return connection_from_credentials(credentials.from_kubeconfig(paths[0], context=context))
        except credentials.NeedsPlugin:
            pass  # the kubernetes package below implements it
        except (credentials.CredentialsError, OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise errors.KubeClientError(f"cannot load kubeconfig {kubeconfig or paths[0]}: {exc}") from exc
    return _load_with_kubernetes(kubeconfig=kubeconfig, context=context)


def _load_with_kubernetes(*, kubeconfig: str | None, context: str | None) -> Connection:
    from kubernetes import client as kclient  # heavy import: only when needed
    from kubernetes import config as kconfig

    configuration = kclient.Configuration()
    # The loaders are untyped; name them as Any once instead of silencing each call.
    load_kube: Any = kconfig.load_kube_config
    try:
        load_kube(config_file=kubeconfig, context=context, client_configuration=configuration)
    except (kconfig.ConfigException, OSError, KeyError, ValueError) as exc:
        raise errors.KubeClientError(f"cannot load kubeconfig {kubeconfig or '(default)'}: {exc}") from exc
    return connection_from_configuration(configuration)


def connection_from_credentials(found: credentials.Credentials) -> Connection:
    """Translate what :mod:`agent.credentials` read for aiohttp."""
    ssl_context: SSLArg = False
    if found.server.startswith("https"):
        ssl_context = _ssl_context(
            ca_file=found.ca_file, ca_pem=found.ca_pem, cert=(found.cert_file, found.cert_pem),
            key=(found.key_file, found.key_pem), verify=found.verify)
    return Connection(server=found.server, ssl_context=ssl_context, authorization=found.authorization,
                      refresh=found.refresh, server_hostname=found.tls_server_name)


def connection_from_document(document: str, *, context: str | None = None,
                             allow_local: bool = False) -> Connection:
    """Load a kubeconfig given as its YAML text (the syncer keeps pull clusters' kubeconfigs
    in its database).

    Such a document comes from whoever registered the cluster, not from this machine's
    operator, so by default it may not run commands or read local files (see
    :mod:`agent.kubeconfig_policy`): it is refused with :class:`KubeconfigRefused` before the
    loader sees it. ``allow_local`` lifts that; relative file references then resolve
    against the working directory.
    """
    from kubernetes import client as kclient
    from kubernetes import config as kconfig

    try:
        data = kubeconfig_policy.parse(document)
    except kubeconfig_policy.KubeconfigUnreadable as exc:
        raise errors.KubeClientError(f"cannot load kubeconfig: {exc}") from exc
    # The same parsed mapping is checked and loaded: nothing can differ between the two.
    kubeconfig_policy.check(data, allow_local=allow_local)
    configuration = kclient.Configuration()
    load: Any = kconfig.load_kube_config_from_dict
    try:
        load(config_dict=data, context=context, client_configuration=configuration)
        return connection_from_configuration(configuration)  # ssl.SSLError is an OSError
    except (kconfig.ConfigException, OSError, KeyError, ValueError, TypeError) as exc:
        raise errors.KubeClientError(f"cannot load kubeconfig: {exc}") from exc


def connection_from_configuration(configuration: Any) -> Connection:
    """Translate a filled ``kubernetes.client.Configuration`` for aiohttp."""
    server = str(configuration.host)
    ssl_context: SSLArg = False
    if server.startswith("https"):
        ssl_context = _ssl_context(
            ca_file=configuration.ssl_ca_cert,
            cert=(configuration.cert_file, None),
            key=(configuration.key_file, None),
            verify=bool(configuration.verify_ssl),
        )
    return Connection(
        server=server,
        ssl_context=ssl_context,
        refresh=functools.partial(_bearer_of, configuration),
        server_hostname=getattr(configuration, "tls_server_name", None) or None,
    )


PemSource = tuple[str | None, bytes | None]  # a file, or PEM bytes


def _ssl_context(
    *, ca_file: str | None, ca_pem: bytes | None = None, cert: PemSource, key: PemSource, verify: bool
) -> ssl.SSLContext:
    cadata: str | bytes | None = None
    if ca_pem:
        try:
            cadata = ca_pem.decode("ascii")  # PEM text; else DER bytes
        except UnicodeDecodeError:
            cadata = ca_pem
    context = ssl.create_default_context(cafile=ca_file or None, cadata=cadata)
    if cert[0] or cert[1]:
        _load_cert_chain(context, cert=cert, key=key)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _load_cert_chain(context: ssl.SSLContext, *, cert: PemSource, key: PemSource) -> None:
    """``load_cert_chain`` reads only files: PEM data goes through a private temporary
    directory that is removed at once."""
    with tempfile.TemporaryDirectory(prefix="kubepedia-tls-") as scratch:
        cert_file = _as_file(cert, Path(scratch) / "cert.pem")
        key_file = _as_file(key, Path(scratch) / "key.pem")
        assert cert_file is not None
        context.load_cert_chain(certfile=cert_file, keyfile=key_file)


def _as_file(source: PemSource, scratch: Path) -> str | None:
    path, pem = source
    if pem:
        scratch.write_bytes(pem)  # inside a 0700 directory
        return str(scratch)
    return path or None


def _bearer_of(configuration: Any) -> str | None:
    # The loaders store the full header value (``Bearer x`` or ``Basic y``) under this key
    # and install a refresh hook that get_api_key_with_prefix() calls.
    value = configuration.get_api_key_with_prefix("BearerToken")
    return str(value) if value else None


class KubeClient:
    """JSON GETs and watch streams over one ``aiohttp.ClientSession``."""

    def __init__(
        self,
        *,
        connection: Connection,
        request_timeout: float = 60.0,
        connect_timeout: float = 10.0,
    ) -> None:
        self.connection = connection
        self._request_timeout = request_timeout
        self._connect_timeout = connect_timeout
        self._session: aiohttp.ClientSession | None = None
        # Whether the server honours streaming lists (sendInitialEvents); None: not known.
        self.streaming_lists: bool | None = None

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.connection.ssl, limit=0),
                # What a stream buffers before reading pauses; above this aiohttp's flow control
                # let most of a megabyte pile up per watch while a streaming list poured in.
                read_bufsize=READ_BUFFER,
                json_serialize=lambda obj: orjson.dumps(obj).decode(),
            )
        return self._session

    async def get_json(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        """GET ``path`` and decode the JSON object it answers; raise mapped errors."""
        return decode_object(await self.get_bytes(path, params))

    async def get_bytes(self, path: str, params: Mapping[str, str] | None = None) -> bytes:
        """GET ``path`` and return the body of a successful answer; raise mapped errors."""
        timeout = aiohttp.ClientTimeout(total=self._request_timeout, sock_connect=self._connect_timeout)
        try:
            async with self._request(path, params, timeout=timeout, retried=False) as response:
                return await (await self._checked(response)).read()
        except errors.Unauthorized:
            await self.connection.auth_headers(force=True)
            async with self._request(path, params, timeout=timeout, retried=True) as response:
                return await (await self._checked(response)).read()

    async def watch(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        inactivity_timeout: float | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Stream the decoded events of one watch request until the server ends it.

        A silent connection (nothing read for ``inactivity_timeout`` seconds) raises
        :class:`errors.ApiConnectionError`, like a reset does: both mean "reconnect".
        """
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout)
        async with self._request(path, params, timeout=timeout, retried=False) as response:
            await self._checked(response)
            splitter = LineSplitter()
            while True:
                chunk = await _read_chunk(response, idle=inactivity_timeout)
                lines = splitter.feed(chunk) if chunk else _tail(splitter)
                for line in lines:
                    yield _decode_event(line)
                if not chunk:
                    return

    def _request(
        self,
        path: str,
        params: Mapping[str, str] | None,
        *,
        timeout: aiohttp.ClientTimeout,
        retried: bool,
    ) -> _Request:
        return _Request(self, path, params, timeout=timeout, retried=retried)

    async def _checked(self, response: aiohttp.ClientResponse) -> aiohttp.ClientResponse:
        if response.status < 400:
            return response
        try:
            body = orjson.loads(await response.read())
        except (orjson.JSONDecodeError, aiohttp.ClientError, TimeoutError):
            body = {"message": response.reason or f"HTTP {response.status}"}
        raise errors.error_from_status(body, http_status=response.status, retry_after=_retry_after(response))


class _Request:
    """``async with``: one request with fresh auth headers and mapped transport errors."""

    def __init__(
        self,
        client: KubeClient,
        path: str,
        params: Mapping[str, str] | None,
        *,
        timeout: aiohttp.ClientTimeout,
        retried: bool,
    ) -> None:
        self._client = client
        self._path = path
        self._params = dict(params or {})
        self._timeout = timeout
        self._response: aiohttp.ClientResponse | None = None

    async def __aenter__(self) -> aiohttp.ClientResponse:
        connection = self._client.connection
        headers = {"Accept": "application/json", **await connection.auth_headers()}
        extra: dict[str, Any] = {}
        if connection.server_hostname:
            extra["server_hostname"] = connection.server_hostname
        try:
            self._response = await self._client.session.get(
                connection.server + self._path,
                params=self._params,
                headers=headers,
                timeout=self._timeout,
                **extra,
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            logger.debug("GET %s failed: %r", self._path, exc)
            raise errors.ApiConnectionError(f"GET {self._path}: {errors.connection_problem(exc)}") from exc
        return self._response

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if self._response is not None:
            # A stream abandoned midway cannot return its connection to the pool.
            if exc is None:
                self._response.release()
            else:
                self._response.close()
        if isinstance(exc, aiohttp.ClientError | TimeoutError):
            logger.debug("GET %s broke off: %r", self._path, exc)
            raise errors.StreamInterrupted(f"GET {self._path}: {errors.connection_problem(exc)}") from exc


async def _read_chunk(response: aiohttp.ClientResponse, *, idle: float | None) -> bytes:
    try:
        async with asyncio.timeout(idle):
            # At most READ_CHUNK: readany() hands over everything buffered at once (most of a
            # megabyte while the events of a streaming list pour in), which the line splitter
            # then holds twice more.
            return await response.content.read(READ_CHUNK)
    except TimeoutError as exc:
        raise errors.StreamInterrupted(f"no data for {idle}s on a watch") from exc


def _tail(splitter: LineSplitter) -> list[bytes]:
    last = splitter.finish()
    return [last] if last is not None else []


def _decode_event(line: bytes) -> dict[str, Any]:
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise errors.InvalidResponse(f"undecodable watch line ({len(line)} bytes)") from exc
    if not isinstance(event, dict) or "type" not in event:
        raise errors.InvalidResponse(f"not a watch event: {line[:200]!r}")
    return event


def decode_object(data: bytes) -> dict[str, Any]:
    """The JSON object ``data`` holds, or :class:`errors.InvalidResponse`."""
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise errors.InvalidResponse(f"undecodable JSON ({len(data)} bytes)") from exc
    if not isinstance(body, dict):
        raise errors.InvalidResponse("expected a JSON object")
    return body


def _retry_after(response: aiohttp.ClientResponse) -> float | None:
    try:
        return float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
