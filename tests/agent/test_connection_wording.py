"""Transport failures worded for people: a few plain words on one line, never a repr."""

from __future__ import annotations

import socket
import ssl

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey

from agent.errors import connection_problem


def _key(host: str = "10.0.0.1", port: int = 6443) -> ConnectionKey:
    return ConnectionKey(host, port, True, True, None, None, None)


@pytest.mark.parametrize(("exc", "words"), [
    (aiohttp.ClientConnectorError(_key(), ConnectionRefusedError(111, "Connect call failed")),
     "connection refused by 10.0.0.1:6443"),
    (aiohttp.ClientConnectorDNSError(_key("api.example.invalid"), socket.gaierror(-2, "Name unknown")),
     "cannot resolve host api.example.invalid"),
    (aiohttp.ClientConnectorError(_key("api.example.invalid"), socket.gaierror(-3, "Temporary failure")),
     "cannot resolve host api.example.invalid"),
    (aiohttp.ClientConnectorCertificateError(_key(), ssl.SSLCertVerificationError(1, "no issuer")),
     "TLS certificate not trusted (10.0.0.1:6443)"),
    (aiohttp.ClientConnectorSSLError(_key(), ssl.SSLError(1, "wrong version number")),
     "TLS handshake failed (10.0.0.1:6443)"),
    (aiohttp.ConnectionTimeoutError("Connection timeout to host https://10.0.0.1:6443/api"), "timed out"),
    (TimeoutError(), "timed out"),
    (aiohttp.ClientConnectorError(_key(), TimeoutError(110, "Connection timed out")),
     "timed out (10.0.0.1:6443)"),
    (aiohttp.ServerDisconnectedError(), "server closed the connection"),
    (aiohttp.ClientOSError(104, "Connection reset by peer"), "connection reset by peer"),
    (ConnectionResetError(), "connection reset"),
    (aiohttp.ClientConnectorError(_key(), OSError(113, "No route to host")),
     "no route to host (10.0.0.1:6443)"),
    (aiohttp.ClientPayloadError("Response payload is not completed"), "response broken off"),
    (aiohttp.InvalidURL("http//nowhere"), "invalid URL http//nowhere"),
    (aiohttp.ClientError("first line\n  second line"), "ClientError: first line second line"),
    (aiohttp.ClientError(), "ClientError"),
])
def test_a_transport_failure_in_plain_words(exc: BaseException, words: str) -> None:
    assert connection_problem(exc) == words
    assert "\n" not in connection_problem(exc)
