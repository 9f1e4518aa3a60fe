"""What a kubeconfig handed to us as a document may ask of the machine that loads it.

A kubeconfig is not only data. The ``kubernetes`` loader runs the command named by a
user's ``exec`` entry (https://kubernetes.io/docs/reference/access-authn-authz/authentication/#client-go-credential-plugins),
lets an ``auth-provider`` run ``cmd-path`` (gcp), use this machine's own cloud credentials
(gcp application default credentials) or call an OIDC issuer it names, and reads local
files named by ``tokenFile``, ``client-certificate``, ``client-key`` and
``certificate-authority`` (the token file's content is then sent to the server the
document names). The syncer loads kubeconfigs that someone else registered, so such a
document could run commands as the syncer or send the syncer's files away.

This module finds those references. A document holding only inline credentials
(``token``, ``username``/``password``, ``*-data`` fields) passes. ``server``,
``tls-server-name``, ``insecure-skip-tls-verify`` and ``proxy-url`` pass too: they only
say where and how to connect, which whoever registers a cluster decides anyway.

An operator's own kubeconfig file (the agent's ``--kubeconfig``) is not checked: whoever
writes it already runs commands on that machine.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from agent.errors import KubeClientError

# field -> what loading it does on this machine
USER_FIELDS: Mapping[str, str] = {
    "exec": "runs a command",
    "auth-provider": "runs a plugin that may run commands or use this machine's credentials",
    "tokenFile": "reads a file",
    "client-certificate": "reads a file",
    "client-key": "reads a file",
}
CLUSTER_FIELDS: Mapping[str, str] = {
    "certificate-authority": "reads a file",
}
_SECTIONS = (("users", "user", USER_FIELDS), ("clusters", "cluster", CLUSTER_FIELDS))


class KubeconfigRefused(KubeClientError):
    """The document references commands or files of the machine that would load it."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("kubeconfig refused: " + "; ".join(problems))
        self.problems = problems


class KubeconfigUnreadable(KubeClientError):
    """The document is not a kubeconfig mapping; the message never quotes it."""


def parse(document: str) -> dict[str, Any]:
    """The mapping a kubeconfig's YAML text holds, or :class:`KubeconfigUnreadable`."""
    try:
        data = yaml.safe_load(document)
    except yaml.YAMLError as exc:
        raise KubeconfigUnreadable(f"not YAML: {_yaml_problem(exc)}") from exc
    if not isinstance(data, dict):
        raise KubeconfigUnreadable("not a mapping")
    return data


def _yaml_problem(exc: yaml.YAMLError) -> str:
    # What is wrong and where, without the excerpt PyYAML quotes: the text may hold
    # credentials, and the message ends up in logs and in the cluster's health.
    problem = getattr(exc, "problem", None) or "unreadable"
    mark = getattr(exc, "problem_mark", None)
    if mark is None:
        return str(problem)
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"


def local_references(config: Mapping[str, Any]) -> list[str]:
    """Every entry and field of ``config`` that would run a command or read a local file,
    as ``user "alice" (users[0]): exec runs a command``; a malformed section is reported
    too, since what cannot be read cannot be vouched for."""
    problems: list[str] = []
    for section, inner, fields in _SECTIONS:
        entries = config.get(section)
        if entries is None:
            continue
        if not isinstance(entries, list):
            problems.append(f"{section} is not a list")
            continue
        for index, entry in enumerate(entries):
            problems.extend(_entry_problems(entry, f"{section}[{index}]", inner, fields))
    return problems


def _entry_problems(entry: Any, where: str, inner: str, fields: Mapping[str, str]) -> list[str]:
    if not isinstance(entry, dict):
        return [f"{where} is not a mapping"]
    body = entry.get(inner)
    label = f"{inner} {_quoted(entry.get('name'))} ({where})"
    if body is None:
        return []
    if not isinstance(body, dict):
        return [f"{label}: {inner} is not a mapping"]
    return [f"{label}: {field} {effect}" for field, effect in fields.items() if field in body]


def _quoted(name: Any) -> str:
    text = name if isinstance(name, str) else repr(name)
    return '"' + text[:100].replace('"', '\\"') + '"'


def check(config: Mapping[str, Any], *, allow_local: bool) -> None:
    """Raise :class:`KubeconfigRefused` naming every local reference, unless allowed."""
    if allow_local:
        return
    problems = local_references(config)
    if problems:
        raise KubeconfigRefused(problems)
