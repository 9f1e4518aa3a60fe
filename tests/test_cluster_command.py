"""``kubepedia cluster`` and ``kubepedia kubeconfig`` as a user runs them: options on either
side of the verb, and one plain line when the server cannot be reached."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture
def closed_url() -> str:
    """A local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _kubepedia(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBEPEDIA_ADMIN_TOKEN": "not-used"}
    return subprocess.run([sys.executable, "-m", "kubepedia", *args], capture_output=True, text=True,
                          env=env, timeout=60, check=False)


@pytest.mark.parametrize("args", [
    ["cluster", "list", "--server", "{url}"],
    ["cluster", "--server", "{url}", "list"],
    ["cluster", "list", "-o", "wide", "--server", "{url}", "--data-dir", "{tmp}"],
    ["cluster", "--data-dir", "{tmp}", "remove", "east", "--server", "{url}"],
    ["cluster", "add", "east", "--push", "--server", "{url}", "--label", "env=prod"],
    ["cluster", "rotate-token", "east", "--grace", "2h", "--server", "{url}"],
])
def test_server_option_before_or_after_the_verb(args: list[str], closed_url: str, tmp_path: Path) -> None:
    proc = _kubepedia(*(a.format(url=closed_url, tmp=tmp_path) for a in args))
    assert proc.returncode == 1
    assert proc.stderr == (f"kubepedia: cannot reach the kubepedia server at {closed_url}: "
                           f"connection refused by {closed_url.removeprefix('http://')}\n")


def test_option_after_the_verb_wins_over_the_one_before(closed_url: str) -> None:
    proc = _kubepedia("cluster", "--server", "http://127.0.0.1:1", "list", "--server", closed_url)
    assert proc.stderr.startswith(f"kubepedia: cannot reach the kubepedia server at {closed_url}: ")


def test_data_dir_after_the_verb_is_where_the_token_is_looked_for(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KUBEPEDIA_ADMIN_TOKEN"}
    proc = subprocess.run([sys.executable, "-m", "kubepedia", "cluster", "list", "--data-dir", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=60, check=False)
    assert proc.returncode == 1
    assert proc.stderr == ("kubepedia: no admin token: set KUBEPEDIA_ADMIN_TOKEN or use --data-dir of the "
                           f"server (looked in {tmp_path})\n")


def test_unresolvable_server_is_one_line() -> None:
    proc = _kubepedia("cluster", "list", "--server", "http://no-such-host.invalid:8080")
    assert proc.returncode == 1
    assert proc.stderr == ("kubepedia: cannot reach the kubepedia server at "
                           "http://no-such-host.invalid:8080: cannot resolve host no-such-host.invalid\n")


def test_kubeconfig_command_unreachable_is_one_line(closed_url: str) -> None:
    proc = _kubepedia("kubeconfig", "--server", closed_url)
    assert proc.returncode == 1
    assert proc.stderr == (f"kubepedia: cannot reach the kubepedia read API at {closed_url}: "
                           f"connection refused by {closed_url.removeprefix('http://')}\n")


def test_the_full_exception_is_kept_for_debug_logs(closed_url: str) -> None:
    proc = _kubepedia("--log-level", "debug", "cluster", "list", "--server", closed_url)
    assert "ClientConnectorError(ConnectionKey(" in proc.stderr
    assert proc.stderr.splitlines()[-1] == (f"kubepedia: cannot reach the kubepedia server at {closed_url}: "
                                            f"connection refused by {closed_url.removeprefix('http://')}")


@pytest.mark.parametrize("grace", ["-1h", "soon", "0x"])
def test_a_bad_grace_period_is_a_usage_error(grace: str) -> None:
    proc = _kubepedia("cluster", "rotate-token", "east", f"--grace={grace}")
    assert proc.returncode == 2 and "argument --grace: expected a duration" in proc.stderr, proc.stderr
