"""What an agent syncs: resource rules, namespace lists, Secret payload policy.

A YAML file (all keys optional)::

    resources:
      include: ["*"]            # patterns on "resource.group" ("pods" for the core group)
      exclude: ["secrets", "*.example.com"]
      customResources: true     # false: skip every type outside the built-in groups
    namespaces:
      include: []               # exact names: list/watch only these (RBAC-friendly)
      exclude: ["kube-system"]  # patterns: dropped client-side
    keepSecretData: false
    discoveryRefreshSeconds: 300

Patterns use ``*`` as "any characters, dots included": ``"*"`` is everything,
``"*.apps"`` every type of the ``apps`` group, ``"deployments.apps"`` one type,
``"pods"`` the core Pods. A type is synced when it matches an include pattern and no
exclude pattern. Namespace rules apply to namespaced types only; cluster-scoped types
(Nodes, Namespaces, ...) are always synced when their type is selected.

Built-in groups are the core group, the upstream groups without a dot (``apps``,
``batch``, ``policy``, ...) and ``*.k8s.io`` (reserved for Kubernetes, see
https://github.com/kubernetes/enhancements/pull/1111). Anything else is treated as a
custom resource; aggregated APIs outside those groups count as custom too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from kube.resources import ResourceType

DEFAULT_DISCOVERY_REFRESH = 300.0
_TOP_LEVEL_KEYS = {"resources", "namespaces", "keepSecretData", "discoveryRefreshSeconds"}
_NAMESPACE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class SelectionError(ValueError):
    """The selection config is invalid; the message names the file and the problem."""


@dataclass(frozen=True, kw_only=True)
class Selection:
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    custom_resources: bool = True
    namespaces_include: tuple[str, ...] = ()
    namespaces_exclude: tuple[str, ...] = ()
    keep_secret_data: bool = False
    discovery_refresh: float = DEFAULT_DISCOVERY_REFRESH
    _include_re: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _exclude_re: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _ns_exclude_re: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in self.namespaces_include:
            if not _NAMESPACE_NAME.match(name):
                raise SelectionError(f"namespaces.include: {name!r} is not a namespace name")
        if self.discovery_refresh <= 0:
            raise SelectionError("discoveryRefreshSeconds must be positive")
        object.__setattr__(self, "_include_re", _compile(self.include) or re.compile("(?!)"))
        object.__setattr__(self, "_exclude_re", _compile(self.exclude))
        object.__setattr__(self, "_ns_exclude_re", _compile(self.namespaces_exclude))

    def selects(self, rtype: ResourceType) -> bool:
        if not self.custom_resources and not is_builtin_group(rtype.group):
            return False
        if not self._include_re.fullmatch(rtype.key):
            return False
        return self._exclude_re is None or not self._exclude_re.fullmatch(rtype.key)

    def select(self, types: Sequence[ResourceType]) -> list[ResourceType]:
        return [rtype for rtype in types if self.selects(rtype)]

    def namespace_excluded(self, namespace: str | None) -> bool:
        return (
            namespace is not None
            and self._ns_exclude_re is not None
            and self._ns_exclude_re.fullmatch(namespace) is not None
        )

    def overridden(self, **changes: Any) -> Selection:
        """A copy with the given fields replaced (``None`` values are ignored): for flags."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def is_builtin_group(group: str) -> bool:
    return group == "" or "." not in group or group.endswith(".k8s.io")


def load_selection(path: str | Path | None) -> Selection:
    """Read a selection file; no file means the defaults (sync everything syncable)."""
    if path is None:
        return Selection()
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        return parse_selection({} if data is None else data)
    except (OSError, yaml.YAMLError, SelectionError) as exc:
        raise SelectionError(f"{path}: {_one_line(exc)}") from exc


def parse_selection(data: Any) -> Selection:
    if not isinstance(data, dict):
        raise SelectionError("the top level must be a mapping")
    _no_unknown(data, _TOP_LEVEL_KEYS, where="top level")
    resources = _mapping(data, "resources", {"include", "exclude", "customResources"})
    namespaces = _mapping(data, "namespaces", {"include", "exclude"})
    return Selection(
        include=_strings(resources, "include", "resources", default=("*",)),
        exclude=_strings(resources, "exclude", "resources"),
        custom_resources=_bool(resources, "customResources", True, "resources."),
        namespaces_include=_strings(namespaces, "include", "namespaces"),
        namespaces_exclude=_strings(namespaces, "exclude", "namespaces"),
        keep_secret_data=_bool(data, "keepSecretData", False, ""),
        discovery_refresh=_number(data, "discoveryRefreshSeconds", DEFAULT_DISCOVERY_REFRESH),
    )


def _compile(patterns: Sequence[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    parts = [".*".join(re.escape(piece) for piece in p.split("*")) for p in patterns]
    return re.compile("|".join(f"(?:{part})" for part in parts))


def _mapping(data: dict[str, Any], key: str, allowed: set[str]) -> dict[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise SelectionError(f"{key} must be a mapping")
    _no_unknown(value, allowed, where=key)
    return value


def _no_unknown(data: dict[str, Any], allowed: set[str], *, where: str) -> None:
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        raise SelectionError(f"unknown key(s) {', '.join(unknown)} in {where}")


def _strings(data: dict[str, Any], key: str, where: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise SelectionError(f"{where}.{key} must be a list of non-empty strings")
    return tuple(value)


def _bool(data: dict[str, Any], key: str, default: bool, prefix: str) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise SelectionError(f"{prefix}{key} must be true or false, not {value!r}")
    return value


def _number(data: dict[str, Any], key: str, default: float) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SelectionError(f"{key} must be a number of seconds, not {value!r}")
    return float(value)


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
