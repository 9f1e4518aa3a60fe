"""Where a member cluster's API is and how to authenticate to it, read without the
``kubernetes`` package when the credentials are plain.

Importing the ``kubernetes`` package costs the agent about 18 MB of memory for as long as
it runs (the package imports every API model, pydantic and requests), more than the data
the agent has in flight. Most agents need none of it: in a pod they use the service
account (a token file and a CA file), and most kubeconfigs hold a token, a client
certificate or a user name and password. Those are read here, as the ``kubernetes``
package reads them (``kube_config.py``, ``incluster_config.py``):

* the context (``--context`` or ``current-context``) names a cluster and a user; names are
  unique in their lists;
* the user's credentials, in the package's order: ``token`` (else ``tokenFile``, read
  once), then ``username`` and ``password`` (Basic);
* for an ``https`` server, the CA and the client certificate and key, each from its
  ``*-data`` field (base64) or else its file, relative to the kubeconfig's directory;
  ``insecure-skip-tls-verify`` and ``tls-server-name``;
* in a pod (``KUBERNETES_SERVICE_HOST``/``_PORT``), the service account's token, read
  again at every refresh since the kubelet rotates it, and its CA.

Anything else is :class:`NeedsPlugin`, and :mod:`agent.kubeclient` then loads the file
through the ``kubernetes`` package as before: a user with an ``auth-provider``, or with
``exec`` and no token; and a ``$KUBECONFIG`` naming several files, which the package merges.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agent.errors import KubeClientError

DEFAULT_KUBECONFIG = "~/.kube/config"
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
SERVICE_HOST, SERVICE_PORT = "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"


class NeedsPlugin(Exception):
    """The kubeconfig asks for what only the ``kubernetes`` package implements."""


class CredentialsError(KubeClientError):
    """The kubeconfig or the service account cannot be read; the message says why."""


@dataclass(frozen=True, kw_only=True)
class Credentials:
    """A server and what authenticates to it; PEM bytes stay in memory, never in files
    this module writes."""

    server: str
    ca_file: str | None = None
    ca_pem: bytes | None = None
    cert_file: str | None = None
    cert_pem: bytes | None = None
    key_file: str | None = None
    key_pem: bytes | None = None
    verify: bool = True
    tls_server_name: str | None = None
    authorization: str | None = None  # the header's value, e.g. "Bearer x"
    # Read the header again from here when refreshing (a rotated service-account token).
    refresh: Callable[[], str | None] | None = None


def kubeconfig_paths(kubeconfig: str | None) -> list[str]:
    """The files a kubeconfig setting names: the option, else ``$KUBECONFIG``, else the
    default; a list separated by ``:`` as the ``kubernetes`` package splits it."""
    setting = kubeconfig if kubeconfig is not None else os.environ.get("KUBECONFIG", DEFAULT_KUBECONFIG)
    return [os.path.expanduser(path) for path in setting.split(os.pathsep) if path]


def from_kubeconfig(path: str, *, context: str | None = None) -> Credentials:
    """The credentials of ``context`` in the kubeconfig file at ``path``."""
    try:
        with open(path, encoding="utf-8") as file:
            config = yaml.safe_load(file)
    except OSError as exc:
        raise CredentialsError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise CredentialsError(f"{path} is not YAML") from exc
    if not isinstance(config, dict):
        raise CredentialsError(f"{path} holds no kubeconfig")
    # Relative paths are read from the kubeconfig's directory as named, symbolic links not followed.
    return from_config(config, context=context, base=Path(os.path.abspath(os.path.dirname(path))))


def from_config(config: Mapping[str, Any], *, context: str | None, base: Path) -> Credentials:
    name = context if context is not None else config.get("current-context")
    if not name:
        raise CredentialsError("no context given and no current-context")
    chosen = _section(_named(config, "contexts", name, required=True), "context")
    cluster = _section(_named(config, "clusters", chosen.get("cluster"), required=True), "cluster")
    user_name = chosen.get("user")
    user = _section(_named(config, "users", user_name, required=False), "user") if user_name else {}
    server = cluster.get("server")
    if not isinstance(server, str) or not server:
        raise CredentialsError(f"cluster {chosen.get('cluster')!r} has no server")
    server = server.rstrip("/")
    authorization = _authorization(user, base)
    tls: dict[str, Any] = {}
    if server.startswith("https"):
        tls = {
            "ca_file": _file(cluster, "certificate-authority", base),
            "ca_pem": _data(cluster, "certificate-authority-data"),
            "cert_file": _file(user, "client-certificate", base),
            "cert_pem": _data(user, "client-certificate-data"),
            "key_file": _file(user, "client-key", base),
            "key_pem": _data(user, "client-key-data"),
        }
    verify = not cluster["insecure-skip-tls-verify"] if "insecure-skip-tls-verify" in cluster else True
    return Credentials(server=server, verify=verify, tls_server_name=cluster.get("tls-server-name") or None,
                       authorization=authorization, **tls)


def in_cluster(environ: Mapping[str, str] | None = None,
               account: Path = SERVICE_ACCOUNT) -> Credentials:
    """The pod's service account, as https://kubernetes.io/docs/tasks/run-application/access-api-from-pod/
    describes it."""
    environ = os.environ if environ is None else environ
    host, port = environ.get(SERVICE_HOST), environ.get(SERVICE_PORT)
    if not host or not port:
        raise CredentialsError(f"{SERVICE_HOST} and {SERVICE_PORT} must be set")
    token_file, ca_file = account / "token", account / "ca.crt"

    def read_token() -> str:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CredentialsError(f"cannot read the service account token: {exc.strerror or exc}") from exc
        if not token:
            raise CredentialsError("the service account token file is empty")
        return f"Bearer {token}"

    try:
        has_ca = bool(ca_file.read_bytes().strip())
    except OSError as exc:
        raise CredentialsError(f"cannot read the service account CA: {exc.strerror or exc}") from exc
    if not has_ca:
        raise CredentialsError("the service account CA file is empty")
    bracketed = f"[{host}]" if ":" in host or "%" in host else host
    return Credentials(server=f"https://{bracketed}:{port}", ca_file=str(ca_file),
                       authorization=read_token(), refresh=read_token)


def _named(config: Mapping[str, Any], section: str, name: Any, *, required: bool) -> Mapping[str, Any]:
    entries = config.get(section) or []
    if not isinstance(entries, list):
        raise CredentialsError(f"{section} is not a list")
    found = []
    for entry in entries:
        if not isinstance(entry, dict) or "name" not in entry:
            raise CredentialsError(f"an entry of {section} has no name")
        if entry["name"] == name:
            found.append(entry)
    if len(found) > 1:
        raise CredentialsError(f"{section} has several entries named {name!r}")
    if not found:
        if required:
            raise CredentialsError(f"{section} has no entry named {name!r}")
        return {}
    return found[0]


def _section(entry: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    body = entry.get(key) if entry else {}
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise CredentialsError(f"{key} {entry.get('name')!r} is not a mapping")
    return body


def _authorization(user: Mapping[str, Any], base: Path) -> str | None:
    if "auth-provider" in user:
        raise NeedsPlugin("auth-provider")
    token = user.get("token")
    if "token" not in user and user.get("tokenFile"):
        path = os.path.normpath(base / str(user["tokenFile"]))
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CredentialsError(f"cannot read tokenFile {path}: {exc.strerror or exc}") from exc
    if token:
        return f"Bearer {token}"
    if "exec" in user:
        raise NeedsPlugin("exec")
    username, password = user.get("username"), user.get("password")
    if username is not None and password is not None:
        pair = f"{username}:{password}".encode()
        return "Basic " + base64.b64encode(pair).decode()
    return None


def _file(body: Mapping[str, Any], key: str, base: Path) -> str | None:
    value = body.get(key)
    if not value or f"{key}-data" in body:
        return None
    if not isinstance(value, str):
        raise CredentialsError(f"{key} is not a path")
    return os.path.normpath(base / value)


def _data(body: Mapping[str, Any], key: str) -> bytes | None:
    value = body.get(key)
    if not value:
        return None
    try:
        return base64.b64decode(value)  # not validated: kubeconfigs wrap these in lines
    except (binascii.Error, TypeError, ValueError) as exc:
        raise CredentialsError(f"{key} is not base64") from exc
