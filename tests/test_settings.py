"""The one YAML schema: validation names the key and the reason; ${ENV} substitution."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchgear.cli import main
from switchgear.errors import ConfigError
from switchgear.settings import load_settings, parse_settings

ROOT = Path(__file__).resolve().parents[1]


def test_minimal_file_loads_and_host_port_override(tmp_path: Path) -> None:
    s = load_settings(
        ROOT / "config" / "minimal.yaml", **{"listen.host": "0.0.0.0", "listen.port": 9999}
    )
    assert (s.listen.host, s.listen.port) == ("0.0.0.0", 9999)
    assert [b.url for b in s.backends] == ["http://127.0.0.1:9001/v1", "http://127.0.0.1:9002/v1"]
    assert {b.model for b in s.backends} == {"m1"}


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "config").glob("*.yaml")))
def test_every_example_config_is_valid(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "t")
    load_settings(ROOT / "config" / name)


def test_env_substitution_and_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPSTREAM_KEY", "sk-secret")
    s = parse_settings(
        {
            "backends": [{"model": "m", "url": "http://h/v1", "api_key": "${UPSTREAM_KEY}"}],
            "auth": {"admin_key": "${NOT_SET_ANYWHERE:-fallback}"},
        }
    )
    assert s.backends[0].api_key == "sk-secret"
    assert s.auth.resolved_admin_key() == "fallback"


def test_missing_env_names_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings({"auth": {"admin_key": "${SURELY_UNSET_VAR_42}"}})
    assert info.value.path == "auth.admin_key"
    assert "SURELY_UNSET_VAR_42" in info.value.reason


@pytest.mark.parametrize(
    ("data", "path", "reason"),
    [
        ({"listen": {"port": 70000}}, "listen.port", "less than or equal"),
        ({"backends": [{"model": "m", "url": "ftp://x"}]}, "backends[0].url", "http://"),
        ({"backends": [{"url": "http://x"}]}, "backends[0].model", "required"),
        ({"listn": {}}, "listn", "unknown key"),
        ({"models": {"a": {"fallback": ["a"]}}}, "", "must not contain the model itself"),
    ],
)
def test_errors_name_key_and_reason(data: dict, path: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(data)
    assert info.value.path == path
    assert reason in info.value.reason


def test_config_check_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text((ROOT / "config" / "minimal.yaml").read_text())
    assert main(["config", "check", str(good)]) == 0
    assert "OK" in capsys.readouterr().out

    bad = tmp_path / "bad.yaml"
    bad.write_text("listen: {host: 127.0.0.1, port: -1}\n")
    assert main(["config", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "listen.port" in err and "Traceback" not in err

    broken = tmp_path / "broken.yaml"
    broken.write_text("listen: [unclosed\n")
    assert main(["config", "check", str(broken)]) == 2
    assert "not valid YAML" in capsys.readouterr().err

    assert main(["config", "check", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err
