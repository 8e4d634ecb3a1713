"""Backend URLs that ``POST /admin/backends`` may register: no way to metadata or loopback
by spelling, no pattern that a host name can impersonate, no health check moved elsewhere."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from switchgear.discovery.registration import external_spec
from switchgear.errors import ConfigError
from switchgear.plugins.manager import make_plugin_manager
from switchgear.proxy.app import create_app
from switchgear.settings import parse_settings
from switchgear.urls import URLRefused, check_backend_url, check_health_path
from tests.discovery.conftest import cluster, gw_settings

__all__ = ["cluster", "gw_settings"]

DEFAULT = ["http://*", "https://*"]
ADMIN = {"Authorization": "Bearer adm"}


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://METADATA.google.internal./",
        "http://[fd00:ec2::254]/latest/",
        "http://0x7f000001:8000/v1",
        "http://2130706433/v1",
        "http://127.1/v1",
        "http://0177.0.0.1/v1",
        "http://[::1]:8000/v1",
        "http://[::ffff:127.0.0.1]/v1",
        "http://[::ffff:a9fe:a9fe]/latest",  # 169.254.169.254, IPv4-mapped
        "http://localhost:8000/v1",
        "http://169.254.10.1/",
        "http://[fe80::1]/",
        "http://10.0.0.5/v1",
        "http://192.168.1.5/v1",
        "http://0.0.0.0:8000/v1",
    ],
)
def test_default_patterns_refuse_special_destinations(url: str) -> None:
    with pytest.raises(URLRefused):
        check_backend_url(url, DEFAULT)


def test_public_urls_pass_the_default_patterns() -> None:
    assert check_backend_url("https://api.example.com/v1", DEFAULT)
    assert check_backend_url("http://93.184.216.34:8000/v1", DEFAULT)


def test_patterns_match_host_names_on_label_boundaries() -> None:
    ten = ["http://10.*"]
    assert check_backend_url("http://10.0.0.5:8000/v1", ten)
    for url in ("http://10.attacker.example/", "http://10.0.0.5.nip.io/", "http://100.0.0.5/"):
        with pytest.raises(URLRefused):
            check_backend_url(url, ten)
    wild = ["https://*.example.com"]
    assert check_backend_url("https://a.b.example.com/v1", wild)
    for url in ("https://example.com.attacker.net/", "https://evilexample.com/"):
        with pytest.raises(URLRefused):
            check_backend_url(url, wild)


def test_an_explicit_pattern_allows_its_range_in_any_spelling() -> None:
    loop = ["http://127.0.0.1:*"]
    assert check_backend_url("http://127.0.0.1:9/v1", loop)
    assert check_backend_url("http://0x7f000001:9/v1", loop)  # the same address
    with pytest.raises(URLRefused):
        check_backend_url("http://127.0.0.2:9/v1", loop)
    assert check_backend_url("http://[::1]:9/v1", ["http://[::1]:*"])
    # a wildcard first label does not name a private range
    with pytest.raises(URLRefused):
        check_backend_url("http://10.0.0.5/v1", ["http://*.*.*.*"])


@pytest.mark.parametrize(
    "path",
    ["@169.254.169.254/latest/meta-data/iam/", "//169.254.169.254/x", "http://evil/", "health"],
)
def test_health_path_must_be_a_path(path: str, gw_settings: Any) -> None:
    with pytest.raises(URLRefused):
        check_health_path(path)
    with pytest.raises(ValueError, match="health_path"):
        external_spec(gw_settings, "http://10.0.0.5:8000/v1", "m1", meta={"health_path": path})


def test_the_check_url_stays_on_the_backend_host(gw_settings: Any) -> None:
    spec = external_spec(
        gw_settings, "http://10.0.0.5:8000/v1", "m1", meta={"health_path": "/v1/models"}
    )
    assert urlsplit(spec.check_url).hostname == "10.0.0.5"
    assert spec.check_url == "http://10.0.0.5:8000/v1/models"


def test_bad_patterns_and_health_paths_are_config_errors() -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings({"external_backends": {"url_patterns": ["10.*"]}})
    assert info.value.path == "external_backends.url_patterns"
    with pytest.raises(ConfigError) as info:
        parse_settings({"health_checks": {"path": "@169.254.169.254/"}})
    assert info.value.path == "health_checks.path"


@pytest.mark.parametrize(
    ("patterns", "body", "param"),
    [
        (None, {"url": "http://169.254.169.254/latest", "model": "m1"}, "url"),
        (None, {"url": "http://0x7f000001:9/v1", "model": "m1"}, "url"),
        (None, {"url": "http://[::1]:9/v1", "model": "m1"}, "url"),
        (["http://10.*"], {"url": "http://10.attacker.example/v1", "model": "m1"}, "url"),
        (
            ["http://10.*"],
            {
                "url": "http://10.0.0.5:8000/v1",
                "model": "m1",
                "meta": {"health_path": "@169.254.169.254/latest/meta-data/iam/"},
            },
            "meta.health_path",
        ),
    ],
)
async def test_admin_refuses_ssrf_registrations(
    aiohttp_client: Any, gw_settings: Any, patterns: list[str] | None, body: dict, param: str
) -> None:
    config: dict[str, Any] = {"consul": gw_settings.model_dump(), "auth": {"admin_key": "adm"}}
    if patterns is not None:
        config["external_backends"] = {"url_patterns": patterns}
    pm = make_plugin_manager(load_entrypoints=False, builtins=())
    client = await aiohttp_client(create_app(parse_settings(config), plugin_manager=pm))
    async with client.post("/admin/backends", json=body, headers=ADMIN) as r:
        assert r.status == 400, await r.text()
        error = (await r.json())["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
