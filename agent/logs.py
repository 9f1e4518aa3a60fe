"""One log line per event: ``time level logger message key=value ...``.

Structured fields travel as ``logging`` ``extra={...}``; this formatter appends every
extra field so that the lines stay greppable and machine-parsable without a JSON logger.

Much of what is logged comes from member clusters and agents (object names, error
messages quoting them). Every character that is not printable (newlines, ANSI escape
sequences, other control and format characters) is written as a backslash escape, so that
such text can neither forge a log line nor drive the terminal that shows it.
"""

from __future__ import annotations

import logging

import orjson

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def printable(text: str, *, backslashes: bool = True) -> str:
    """``text`` with non-printable characters escaped (``\\x1b``, ``\\n``, ``\\u202e``) and,
    unless told otherwise, backslashes doubled: one line of inert characters."""
    if text.isprintable() and not (backslashes and "\\" in text):
        return text
    return "".join(_escape(c, backslashes=backslashes) for c in text)


def _escape(char: str, *, backslashes: bool) -> str:
    if char == "\\" and not backslashes:
        return char
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    if char.isprintable():
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = printable(super().format(record))
        fields = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        if fields:
            line += " " + " ".join(f"{printable(k)}={_value(v)}" for k, v in fields.items())
        return line


def _value(value: object) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    if not text or " " in text or "=" in text or '"' in text:
        # One JSON string: orjson escapes quotes, backslashes and C0 controls, not the rest.
        return printable(orjson.dumps(text).decode(), backslashes=False)
    return printable(text)


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(KeyValueFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
