"""The files shipped beside the code stay valid: compose demo, seeds, config."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel

from mqttproxy.config import Config, load_config
from mqttproxy.upstream.store import BrokerStore

ROOT = Path(__file__).resolve().parent.parent


def test_compose_seed_brokers_load() -> None:
    records = BrokerStore(ROOT / "config" / "compose" / "brokers.json", secret_key=None).load()
    assert [record.id for record in records] == ["cloud", "backup"]
    # The addresses are the compose services' names.
    compose = (ROOT / "docker-compose.yml").read_text()
    for record in records:
        assert f"\n  {record.address}:\n" in compose


def test_compose_mounts_files_that_exist() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    mounted = re.findall(r"- \./([^:\s]+):", compose)
    assert mounted
    for relative in mounted:
        assert (ROOT / relative).is_file(), relative
    assert (ROOT / "Dockerfile").is_file()


def test_shipped_config_loads() -> None:
    config = load_config(ROOT / "config" / "proxy.toml")
    assert config.auth.allow_anonymous is False
    assert config.mqtt.port == 1883
    assert config.web.port == 3000


def test_the_shipped_config_shows_the_defaults() -> None:
    """Every value config/proxy.toml sets is the built-in default, so the file documents them."""
    assert load_config(ROOT / "config" / "proxy.toml") == Config()


def _table(annotation: Any) -> type[BaseModel] | None:
    """The settings table a field holds (``TlsListenerConfig | None`` included), if it is one."""
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def test_the_shipped_config_names_every_setting() -> None:
    """config/proxy.toml is the reference: every setting appears, set or commented out."""
    text = (ROOT / "config" / "proxy.toml").read_text()

    def check(model: type[BaseModel], path: str) -> None:
        for key, info in model.model_fields.items():
            table = _table(info.annotation)
            if key == "users":  # [[auth.users]] tables
                assert "[[auth.users]]" in text
            elif table is not None:
                name = f"{path}.{key}" if path else key
                assert re.search(rf"^#? ?\[{re.escape(name)}\]", text, re.MULTILINE), name
                check(table, name)
            else:
                assert re.search(rf"^(# )*{key} =", text, re.MULTILINE), f"[{path}] {key}"

    check(Config, "")


def test_every_package_is_listed_for_installation() -> None:
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(path.parent.relative_to(ROOT).parts) for path in (ROOT / "mqttproxy").rglob("__init__.py")
    } | {"mqttproxy.web"}
    assert listed == found
    assert (ROOT / "web" / "__init__.py").is_file()


def test_python_requirement_is_the_same_everywhere() -> None:
    """pip refuses an older Python with a clear message, and the README says the same version."""
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    minimum = pyproject["project"]["requires-python"].removeprefix(">=")
    assert pyproject["tool"]["mypy"]["python_version"] == minimum
    assert f"Needs Python {minimum} or newer" in (ROOT / "README.md").read_text()
    assert f"FROM python:{minimum}-" in (ROOT / "Dockerfile").read_text()
