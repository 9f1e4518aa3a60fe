"""Tokens kubepedia makes are given after flags (``--token VALUE``): none may look like one."""

from __future__ import annotations

from syncer.secretfile import new_token


def test_no_token_starts_with_a_dash() -> None:
    # URL-safe base64 starts with "-" once in 64 draws: 2000 draws without the guard fail
    # all but once in ten million runs.
    tokens = {new_token() for _ in range(2000)}
    assert len(tokens) == 2000 and all(len(t) == 43 for t in tokens)
    assert not any(t.startswith("-") for t in tokens)
