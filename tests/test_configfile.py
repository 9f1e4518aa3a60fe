"""``kubepedia serve --config FILE`` and ``--print-config`` (kube.configfile)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from kube import configfile
from kube.configfile import ConfigError, from_env
from kubepedia.commands import main


def _effective(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert main(["serve", *argv, "--print-config"]) == 0
    printed: dict[str, object] = yaml.safe_load(capsys.readouterr().out)
    return printed


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "kubepedia.yaml"
    path.write_text(text)
    return path


def test_flag_over_environment_over_file_over_default(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBEPEDIA_DATABASE_URL", raising=False)
    config = _file(tmp_path, "database-url: postgresql://file/db\napi-listen: 0.0.0.0:9000\n"
                             "change-log-retention: 3d\nallow-kubeconfig-exec: true\n")
    assert _effective(capsys)["api-listen"] == "127.0.0.1:8080"  # the default
    got = _effective(capsys, "--config", str(config))
    assert (got["database-url"], got["api-listen"]) == ("postgresql://file/db", "0.0.0.0:9000")
    assert got["change-log-retention"] == 3 * 86400 and got["allow-kubeconfig-exec"] is True
    monkeypatch.setenv("KUBEPEDIA_DATABASE_URL", "postgresql://env/db")
    assert _effective(capsys, "--config", str(config))["database-url"] == "postgresql://env/db"
    got = _effective(capsys, "--config", str(config), "--database-url", "postgresql://flag/db",
                     "--api-listen", "127.0.0.1:1")
    assert (got["database-url"], got["api-listen"]) == ("postgresql://flag/db", "127.0.0.1:1")


def test_print_config_redacts_secrets_and_reads_back(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBEPEDIA_DATABASE_URL", "postgresql://kube:hunter2@db:5432/kubepedia")
    out = _effective(capsys)
    assert out["database-url"] == "postgresql://kube:<redacted>@db:5432/kubepedia"
    assert "hunter2" not in yaml.safe_dump(out)
    replicas = _effective(capsys, "--read-database-url", "postgresql://kube:hunter2@r1/kubepedia",
                          "--read-database-url", "postgresql://r2/kubepedia")
    assert replicas["read-database-url"] == ["postgresql://kube:<redacted>@r1/kubepedia",
                                             "postgresql://r2/kubepedia"]
    monkeypatch.delenv("KUBEPEDIA_DATABASE_URL")
    printed = _effective(capsys, "--api-listen", "[::1]:8080")
    again = _effective(capsys, "--config", str(_file(tmp_path, yaml.safe_dump(printed))))
    assert again == printed  # what it prints is a config file that means the same


@pytest.mark.parametrize(("text", "message"), [
    ("api_listen: 0.0.0.0:1\n", "unknown key 'api_listen' (did you mean 'api-listen'?)"),
    ("listen-everywhere: true\n", "unknown key 'listen-everywhere'"),
    ("ingest-listen: [a, b]\n", "ingest-listen: expected a single value, got list"),
    ("ingest-listen: nowhere\n", "ingest-listen: expected HOST:PORT"),
    ("allow-kubeconfig-exec: 'yes please'\n", "allow-kubeconfig-exec: expected true or false"),
    ("change-log-retention: {days: 3}\n", "change-log-retention: expected a single value, got dict"),
    ("log-level: loud\n", "log-level: 'loud' is not one of"),
    ("- api-listen\n", "expected a mapping"),
])
def test_bad_files_name_the_file_and_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             text: str, message: str) -> None:
    config = _file(tmp_path, text)
    assert main(["serve", "--config", str(config), "--print-config"]) == 2
    err = capsys.readouterr().err
    assert str(config) in err and message in err, err


def test_a_missing_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--config", str(tmp_path / "nope.yaml"), "--print-config"]) == 2
    assert "nope.yaml: cannot read the config file" in capsys.readouterr().err


def test_any_flag_a_parser_has_is_settable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parser = argparse.ArgumentParser(prog="x")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve")
    configfile.add_config_options(serve)
    serve.add_argument("--tls-cert", type=Path)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--grant", action="append")
    from_env(serve.add_argument("--auth-token"), "X_AUTH_TOKEN")
    monkeypatch.delenv("X_AUTH_TOKEN", raising=False)
    config = _file(tmp_path, "tls-cert: /etc/x.pem\nworkers: 4\ngrant: [a, b]\nauth-token: s3cret\n")
    args = configfile.parse_args(parser, ["serve", "--config", str(config)], commands={"serve": serve})
    assert (args.tls_cert, args.workers, args.grant, args.auth_token) == (Path("/etc/x.pem"), 4, ["a", "b"],
                                                                        "s3cret")
    assert "auth-token: <redacted>" in configfile.effective(args, [serve, parser])
    with pytest.raises(ConfigError, match="workers: invalid literal"):
        configfile.parse_args(parser, ["serve", "--config", str(_file(tmp_path, "workers: many\n"))],
                              commands={"serve": serve})
