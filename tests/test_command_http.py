"""The commands' HTTP helper against a real listener: answers in our listeners' shape are
read, anything else is named as a stranger, and every failure reaches the user as one line."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest
import pytest_asyncio
from aiohttp import web

from kube.status import status_body
from kubepedia.http import CommandError, Server, get_json, get_text, run_command
from tests.serving import serve_app


async def _status(_: web.Request) -> web.Response:
    body = status_body(404, "NotFound", "report 'x' not found\x1b[2J")
    return web.Response(body=orjson.dumps(body), status=404, content_type="application/json")


async def _foreign_error(_: web.Request) -> web.Response:
    return web.json_response({"error": "no such page", "message": "not ours"}, status=404)


async def _html(_: web.Request) -> web.Response:
    return web.Response(text="<html>welcome</html>", content_type="text/html")


async def _list(_: web.Request) -> web.Response:
    return web.json_response([1, 2])


async def _csv(request: web.Request) -> web.Response:
    return web.Response(text=f"a,b\r\n{request.query.get('x', '')},2\r\n", content_type="text/csv")


@pytest_asyncio.fixture
async def url() -> AsyncIterator[str]:
    app = web.Application()
    app.add_routes([web.get("/status", _status), web.get("/foreign", _foreign_error),
                    web.get("/html", _html), web.get("/list", _list), web.get("/csv", _csv)])
    runner, base = await serve_app(app)
    try:
        yield base
    finally:
        await runner.cleanup()


async def test_a_status_answer_is_its_message(url: str) -> None:
    with pytest.raises(CommandError, match=r"^report 'x' not found\x1b\[2J$"):
        await get_json(Server(url=url), "/status")
    with pytest.raises(CommandError, match=r"^report 'x' not found"):
        await get_text(Server(url=url), "/status")


@pytest.mark.parametrize("path", ["/foreign", "/html", "/list"])
async def test_what_our_listeners_do_not_answer_names_a_stranger(url: str, path: str) -> None:
    server = Server(url=url, name="kubepedia server", role="kubepedia admin listener")
    with pytest.raises(CommandError) as raised:
        await get_json(server, path)
    status = 404 if path == "/foreign" else 200
    assert str(raised.value) == f"{url} is not a kubepedia admin listener (HTTP {status})"


async def test_text_is_the_body_as_sent(url: str) -> None:
    assert await get_text(Server(url=url), "/csv", params={"x": "é"}) == "a,b\r\né,2\r\n"


def test_a_failure_is_one_inert_line(capsys: pytest.CaptureFixture[str]) -> None:
    async def failing() -> str:
        raise CommandError("bad\nname\x1b[2J")

    async def fine() -> str:
        return "done"

    assert run_command(failing()) == 1
    assert capsys.readouterr() == ("", "kubepedia: bad\\nname\\x1b[2J\n")
    assert run_command(fine()) == 0
    assert capsys.readouterr() == ("done\n", "")


def test_other_failures_are_caught_only_when_named(capsys: pytest.CaptureFixture[str]) -> None:
    async def failing() -> str:
        raise OSError("disk gone")

    assert run_command(failing(), failures=(OSError,)) == 1
    assert capsys.readouterr().err == "kubepedia: disk gone\n"
    with pytest.raises(OSError):
        run_command(failing())
