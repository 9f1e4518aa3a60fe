"""A YAML file for a command's flags, read generically from its argparse parser.

Every long option of the parser (and of its parent's, e.g. ``--log-level``) can be set in
the file under its flag name without the dashes, exactly as on the command line::

    api-listen: 0.0.0.0:8080
    change-log-retention: 3d
    allow-kubeconfig-exec: false        # flags without a value: true or false

A key set to ``null`` leaves the option at its default (``--print-config`` prints unset
options so). A flag added later is covered without more code. Where a setting comes from, the first
that has it wins: the command line, then the flag's environment variable (an option marked
with ``from_env``), then the file, then the default. A key that names no flag is an error
naming the key and the file; a value of the wrong type (a list for a single value, a word
for a number, anything but true/false for a switch) is an error naming the key.

``effective`` is what ``--print-config`` prints: every setting as the file would spell it,
with secrets redacted (options marked ``secret``, options named for tokens or passwords,
and the password of any URL).
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

REDACTED = "<redacted>"
_SECRET_NAME = re.compile(r"(token|password|passwd|secret)(?!.*(file|dir|path)$)")
_SKIPPED = frozenset({"help", "config", "print-config", "version"})


class ConfigError(ValueError):
    """The config file cannot be used; the message names the file, and the key if one is wrong."""


def from_env(action: argparse.Action, variable: str) -> argparse.Action:
    """Mark ``action`` as set by ``variable`` too (when set and not empty), which overrides
    the config file; the flag overrides both."""
    action.env = variable  # type: ignore[attr-defined]
    value = os.environ.get(variable)
    if value:
        action.default = value
    return action


def secret(action: argparse.Action) -> argparse.Action:
    """Mark ``action``'s value as a secret: ``--print-config`` redacts it."""
    action.secret = True  # type: ignore[attr-defined]
    return action


def add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, metavar="FILE",
                        help="a YAML file of these options (flag names without dashes); flags and"
                             " their environment variables override it")
    parser.add_argument("--print-config", action="store_true",
                        help="print the effective configuration as YAML (secrets redacted) and exit")


def settable(parsers: Iterable[argparse.ArgumentParser]) -> dict[str, argparse.Action]:
    """Key -> option, for every long option a file may set."""
    found: dict[str, argparse.Action] = {}
    for parser in parsers:
        for action in parser._actions:  # argparse keeps no public list of its options
            longs = [o for o in action.option_strings if o.startswith("--")]
            if longs and longs[0][2:] not in _SKIPPED:
                found.setdefault(longs[0][2:], action)
    return found


def load(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {_one_line(exc)}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option names to values")
    return data


def defaults_from(data: Mapping[Any, Any], actions: Mapping[str, argparse.Action], *,
                  source: Path) -> dict[str, Any]:
    """``dest -> value`` for the file's settings that no environment variable overrides;
    every value is checked as the flag would check it."""
    defaults: dict[str, Any] = {}
    for key, value in data.items():
        action = actions.get(key) if isinstance(key, str) else None
        if action is None:
            raise ConfigError(f"{source}: unknown key {key!r}{_hint(key, actions)}")
        variable = getattr(action, "env", None)
        if value is None or (variable and os.environ.get(variable)):
            continue  # null: the default (as --print-config shows unset options); the variable wins
        defaults[action.dest] = _checked(key, value, action, source=source)
    return defaults


def _checked(key: str, value: Any, action: argparse.Action, *, source: Path) -> Any:
    """The value as a default of ``action``: strings are left for argparse to convert (after
    a trial conversion here, whose error names the key), so that it converts them once, as
    it does the flag's own default."""
    if action.nargs == 0:  # a switch (store_true, store_false, store_const)
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {key}: expected true or false, got {_shown(value)}")
        return action.const if value else (not action.const if isinstance(action.const, bool) else None)
    if isinstance(action, argparse._AppendAction) or action.nargs in ("*", "+"):
        items = value if isinstance(value, list) else None
        if items is None:
            raise ConfigError(f"{source}: {key}: expected a list, got {_shown(value)}")
        return [_convert(key, item, action, source=source) for item in items]
    text = _scalar(key, value, source=source)
    _convert(key, text, action, source=source)
    return text


def _scalar(key: str, value: Any, *, source: Path) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(f"{source}: {key}: expected a single value, got {_shown(value)}")
    return str(value)


def _convert(key: str, value: Any, action: argparse.Action, *, source: Path) -> Any:
    text = _scalar(key, value, source=source)
    convert: Callable[[str], Any] = action.type if callable(action.type) else str
    try:
        converted = convert(text)
    except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {key}: {exc}") from exc
    if action.choices is not None and converted not in action.choices:
        allowed = ", ".join(map(str, action.choices))
        raise ConfigError(f"{source}: {key}: {text!r} is not one of {allowed}")
    return converted


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None, *,
               commands: Mapping[str, argparse.ArgumentParser]) -> argparse.Namespace:
    """``parser.parse_args(argv)``, with ``--config FILE`` of the chosen command (one of
    ``commands``, whose parsers have ``add_config_options``) under the command line."""
    args = parser.parse_args(argv)
    command = commands.get(getattr(args, "command", "") or "")
    path: Path | None = getattr(args, "config", None)
    if command is None or path is None:
        return args
    actions = settable([command, parser])
    defaults = defaults_from(load(path), actions, source=path)
    own = {a.dest for a in command._actions}
    command.set_defaults(**{dest: v for dest, v in defaults.items() if dest in own})
    parser.set_defaults(**{dest: v for dest, v in defaults.items() if dest not in own})
    return parser.parse_args(argv)


def effective(args: argparse.Namespace, parsers: Iterable[argparse.ArgumentParser]) -> str:
    """The settings in ``args`` as a config file (YAML), secrets redacted."""
    values = {key: _redacted(key, action, _plain(getattr(args, action.dest, None)))
              for key, action in sorted(settable(parsers).items()) if hasattr(args, action.dest)}
    return yaml.safe_dump(values, sort_keys=False, default_flow_style=False)


def _plain(value: Any) -> Any:
    """A value as the flag would be written: a HOST:PORT pair back to its text."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], int):
        host = f"[{value[0]}]" if ":" in str(value[0]) else str(value[0])
        return f"{host}:{value[1]}"
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _redacted(key: str, action: argparse.Action, value: Any) -> Any:
    if value in (None, "", False, []):
        return value
    if getattr(action, "secret", False) or _SECRET_NAME.search(key):
        return REDACTED
    if isinstance(value, list):  # a repeated flag: each URL loses its password
        return [_redacted(key, action, v) for v in value]
    if isinstance(value, str) and "://" in value:
        parts = urlsplit(value)
        if parts.password:
            netloc = parts.netloc.replace(f":{parts.password}@", f":{REDACTED}@", 1)
            return urlunsplit(parts._replace(netloc=netloc))
    return value


def _hint(key: Any, actions: Mapping[str, argparse.Action]) -> str:
    spelled = str(key).replace("_", "-").lstrip("-")
    return f" (did you mean {spelled!r}?)" if spelled in actions else ""


def _shown(value: Any) -> str:
    return type(value).__name__ if isinstance(value, dict | list) else repr(value)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
