"""HTTP fuzzing of the read API on a real port over a small fleet (tests/hostile/conftest.py).

- schemathesis, driven by the project's OpenAPI document (/kubepedia/v1/openapi.json): no
  5xx; every answer of 400 or more is a Kubernetes ``Status`` with the same code; responses
  match the document's schemas, status codes and content types.
- hypothesis over raw requests written to a socket (percent-encodings, NUL and other bytes
  in paths, overlong segments, huge or broken headers, wrong Accept and Content-Type,
  any method): never a 5xx, and the server goes on answering. A request aiohttp cannot
  parse as HTTP never reaches the application: aiohttp answers it in plain text with a 4xx,
  as Go's net/http (and so kube-apiserver) does; everything the application answers is a
  ``Status``.
"""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlsplit

import orjson
import schemathesis
from hypothesis import given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from apiserver.openapi import document
from tests.hostile.conftest import Fuzzed

SCHEMA = schemathesis.openapi.from_dict(orjson.loads(document()))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _is_status_of(body: Any, code: int) -> None:
    assert isinstance(body, dict) and body.get("kind") == "Status", body
    assert body["apiVersion"] == "v1" and body["status"] == "Failure", body
    assert body["code"] == code and isinstance(body.get("reason"), str) and body.get("message"), body


@SCHEMA.parametrize()
@settings(max_examples=5)
def test_every_documented_operation_answers_within_its_document(case: Any, fuzzed_api: Fuzzed) -> None:
    response = case.call(base_url=fuzzed_api.url, timeout=60)
    assert response.status_code < 500, (case.as_curl_command(), response.text[:500])
    if response.status_code >= 400:
        _is_status_of(response.json(), response.status_code)
    case.validate_response(response, checks=CHECKS)


# -- raw requests ---------------------------------------------------------------------------------

PREFIXES = ["/", "/api/v1/", "/api/v1/namespaces/default/pods/", "/apis/apps/v1/", "/clusters/east/api/v1/",
            "/clusters/", "/apis/clusterpedia.io/v1beta1/resources/", "/apis/clusterpedia.io/v1beta1/",
            "/kubepedia/v1/history/", "/kubepedia/v1/reports/", "/kubepedia/v1/", "/openapi/v2", "/healthz/"]
ESCAPES = ["%", "%2", "%zz", "%00", "%2F", "%2f", "%25", "%FF%FE", "%C0%AF", "%E2%80%AE", "%0A", "%0D%0A",
           "..", ".", "//", "%2e%2e", "\\", ";", "?", "#", "~", "*"]
SEGMENT = st.one_of(
    st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="%?#"), max_size=12),
    st.sampled_from(ESCAPES),
    st.integers(min_value=250, max_value=9000).map(lambda n: "a" * n),  # overlong segments
    st.text(max_size=6).map(lambda t: "".join(f"%{b:02X}" for b in t.encode("utf-8", "surrogatepass"))),
)
PATH = st.tuples(st.sampled_from(PREFIXES), st.lists(SEGMENT, max_size=5)).map(
    lambda parts: (parts[0] + "/".join(parts[1])).encode("utf-8", "surrogatepass"))
QUERY_NAMES = ["limit", "continue", "labelSelector", "fieldSelector", "resourceVersion", "watch",
               "timeoutSeconds", "since", "before", "clusters", "orderby", "asOf", "includeObject", "x"]
QUERY = st.lists(st.tuples(st.sampled_from(QUERY_NAMES), st.lists(SEGMENT, max_size=2).map("".join)),
                 max_size=4).map(lambda pairs: "&".join(f"{k}={v}" for k, v in pairs).encode("utf-8",
                                                                                               "surrogatepass"))
RAW_BYTES = st.binary(max_size=20)  # anything, CR, LF, NUL and space included
ACCEPT = st.sampled_from(["application/json", "application/json;as=Table;v=v1;g=meta.k8s.io",
                          "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
                          "application/vnd.kubernetes.protobuf", "application/yaml", "text/html", "*/*",
                          "application/json;as=Table;v=v9;g=x", ";;;", "application/json;q=abc", ""])
HEADER_VALUE = st.one_of(ACCEPT.map(str.encode), RAW_BYTES,
                         st.integers(min_value=100, max_value=20000).map(lambda n: b"x" * n))
HEADER_NAME = st.sampled_from([b"Accept", b"Content-Type", b"Content-Length", b"Transfer-Encoding",
                               b"Authorization", b"Content-Encoding", b"Host", b"X-\x00", b"Accept\x7f"])
METHOD = st.sampled_from([b"GET", b"GET", b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS",
                          b"TRACE", b"G\x00T", b"BREW"])


def _exchange(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Write ``request`` as it is; the status, headers and body of the answer."""
    where = urlsplit(url)
    with socket.create_connection((where.hostname or "", where.port or 80), timeout=60) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        body = _unchunked(body)
    return status, headers, body


def _unchunked(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, body = out + rest[:size], rest[size + 2:]
    return out


@st.composite
def raw_request(draw: st.DrawFn) -> tuple[bytes, bytes]:
    method = draw(METHOD)
    target = draw(PATH)
    if query := draw(QUERY):
        target += b"?" + query
    if draw(st.booleans()):
        target += draw(RAW_BYTES)
    headers = [(b"Host", b"fuzz"), *draw(st.lists(st.tuples(HEADER_NAME, HEADER_VALUE), max_size=4))]
    lines = [method + b" " + target + b" HTTP/1.1", *(n + b": " + v for n, v in headers),
             b"Connection: close"]
    return method, b"\r\n".join(lines) + b"\r\n\r\n"


@given(raw_request())
@settings(max_examples=100)
def test_raw_paths_and_headers_never_fail_the_server(fuzzed_api: Fuzzed, sent: tuple[bytes, bytes]) -> None:
    method, request = sent
    status, headers, body = _exchange(fuzzed_api.url, request)
    assert status < 500, (request[:300], status, body[:300])
    if status >= 400 and headers.get("content-type", "").startswith("application/json") and method != b"HEAD":
        _is_status_of(orjson.loads(body), status)
    elif status >= 400:
        # Not HTTP that aiohttp could parse, answered before the application: in plain text.
        assert method == b"HEAD" or headers.get("content-type", "").startswith("text/plain"), (request[:300],
                                                                                               headers)
    # And the server still answers.
    status, _, body = _exchange(fuzzed_api.url, b"GET /api/v1/pods?limit=1 HTTP/1.1\r\nHost: x\r\n"
                                                b"Connection: close\r\n\r\n")
    assert status == 200 and orjson.loads(body)["kind"] == "PodList"
