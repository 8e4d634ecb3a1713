"""Without the ``otel`` extra: tracing off runs unchanged, tracing on is a config error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from switchgear.errors import ConfigError
from switchgear.proxy import keys
from switchgear.settings import parse_settings
from tests.telemetry.conftest import backends

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_otel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every ``opentelemetry`` module unimportable, as on an install without the extra."""
    for name in [m for m in sys.modules if m == "opentelemetry" or m.startswith("opentelemetry.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    monkeypatch.delitem(sys.modules, "switchgear.telemetry.otel", raising=False)


@pytest.mark.usefixtures("no_otel")
async def test_tracing_off_runs_without_the_extra(upstream, gateway):
    up = await upstream("m1", name="a")
    gw = await gateway({"backends": backends(up)})
    assert not gw.app[keys.TRACING].enabled
    async with gw.openai() as client:
        answer = await client.chat.completions.create(
            model="m1", messages=[{"role": "user", "content": "hi"}]
        )
    assert answer.choices[0].message.content == "hello from a"
    assert "switchgear.telemetry.otel" not in sys.modules


@pytest.mark.usefixtures("no_otel")
def test_tracing_on_without_the_extra_is_a_config_error():
    with pytest.raises(ConfigError) as caught:
        parse_settings({"tracing": {"enabled": True}})
    message = str(caught.value)
    assert message.startswith("tracing")
    assert "otel extra" in message and "pip install 'switchgear[otel]'" in message


def test_tracing_settings_are_checked():
    with pytest.raises(ConfigError, match="tracing.sample_ratio"):
        parse_settings({"tracing": {"sample_ratio": 2}})
    with pytest.raises(ConfigError, match="must start with http"):
        parse_settings({"tracing": {"enabled": True, "endpoint": "collector:4318"}})


def test_the_gateway_imports_no_opentelemetry_while_tracing_is_off():
    """A fresh interpreter where the extra is missing builds the whole gateway app."""
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "from switchgear.cli import main\n"
        "from switchgear.proxy.app import create_app\n"
        "from switchgear.settings import parse_settings\n"
        "app = create_app(parse_settings({}))\n"
        "loaded = [m for m in sys.modules if m.startswith('opentelemetry')]\n"
        "assert loaded == ['opentelemetry'], loaded\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
