"""One ClientConfig for both flavours: every setting a keyword with the default written once,
reaching the config the client runs with, and refused with its name when it is unusable."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from muxwsgi.client import AsyncClient, Client
from muxwsgi.client._config import ClientConfig

FLAVOURS = [AsyncClient, Client]
DEFAULTS = {f.name: f.default for f in dataclasses.fields(ClientConfig)}
#: A usable value other than the default, for every setting.
OTHERS = {
    "timeout": 3.0,
    "retries": 2,
    "connect_timeout": 4.0,
    "write_timeout": 5.0,
    "max_connections_per_endpoint": 3,
    "keepalive_interval": 6.0,
    "keepalive_timeout": 7.0,
    "stream_window": 1 << 16,
    "connection_window": 1 << 21,
    "max_transparent_retries": 4,
    "resolve_interval": 2.0,
    "balancing": "least_outstanding",
    "ejection_failures": 2,
    "ejection_time": 3.0,
    "max_ejection_time": 9.0,
    "max_ejection_percent": 50,
    "trace": True,
    "opentelemetry": False,
    "verify": False,
    "cert": __file__,  # any existing file: it is read at the first TLS connection
}
#: The keywords that are not settings: where requests go, not how.
NOT_SETTINGS = {"resolver"}


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_the_keywords_are_the_settings_with_their_defaults(flavour: type) -> None:
    parameters = inspect.signature(flavour).parameters.values()
    keywords = {p.name: p.default for p in parameters if p.kind is p.KEYWORD_ONLY}
    assert {name: keywords.pop(name) for name in NOT_SETTINGS} == {"resolver": None}
    assert keywords == DEFAULTS


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_every_setting_reaches_the_config(flavour: type[AsyncClient] | type[Client]) -> None:
    assert OTHERS.keys() == DEFAULTS.keys(), "give the new setting a value in OTHERS"
    assert all(OTHERS[name] != DEFAULTS[name] for name in OTHERS)
    client = flavour("mux://127.0.0.1:1", **OTHERS)  # type: ignore[arg-type]
    assert type(client.config) is ClientConfig  # the same class for both flavours
    assert client.config == ClientConfig(**OTHERS)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("timeout", 0, "above 0"),
        ("timeout", float("nan"), "above 0"),
        ("retries", -1, "at least 0"),
        ("retries", 1.5, "an integer"),
        ("connect_timeout", "10", "a number"),
        ("write_timeout", 0.0, "above 0"),
        ("max_connections_per_endpoint", 0, "at least 1"),
        ("keepalive_interval", -1.0, "at least 0"),
        ("keepalive_timeout", True, "a number"),
        ("stream_window", 0, "at least 1"),
        ("stream_window", 1 << 31, "at most 2147483647"),
        ("connection_window", 1024, "at least 65535"),
        ("max_transparent_retries", -1, "at least 0"),
        ("resolve_interval", 0, "above 0"),
        ("balancing", "round_robin", "one of 'peak_ewma', 'least_outstanding'"),
        ("ejection_failures", 0, "at least 1"),
        ("ejection_time", -1.0, "above 0"),
        ("max_ejection_time", 10.0, "at least 30.0"),
        ("max_ejection_percent", 101, "at most 100"),
        ("trace", 1, "True or False"),
        ("opentelemetry", 1, "True, False or 'auto'"),
        ("opentelemetry", "on", "True, False or 'auto'"),
    ],
)
def test_an_unusable_setting_is_refused_by_name(setting: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=rf"^{setting}=.*: must be .*{message}"):
        Client("mux://127.0.0.1:1", **{setting: value})  # type: ignore[arg-type]


def test_each_connection_gets_its_own_core_settings() -> None:
    config = ClientConfig(stream_window=1 << 16, connection_window=1 << 21)
    first, second = config.connection_config(), config.connection_config()
    assert first.settings.initial_window_size == 1 << 16
    assert first.connection_window_size == 1 << 21
    assert first.settings is not second.settings  # a connection's settings are its own
