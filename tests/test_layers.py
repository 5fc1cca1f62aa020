"""Keep the import rules of docs/ARCHITECTURE.md true."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mqttproxy"

# top-level part of mqttproxy -> the parts it may import
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "passwords": set(),
    "protocol": {"errors"},
    "config": {"errors"},
    "broker": {"protocol", "config", "errors", "metrics", "passwords"},
    "webapp": {"config", "errors", "operators", "upstream", "registry", "shadow", "timeseries"},
    "operators": {"storage", "passwords", "errors", "throttle"},
    "throttle": set(),
    "storage": {"errors"},
    "registry": {"broker", "protocol", "storage", "errors", "throttle"},
    "shadow": {"broker", "storage", "errors"},
    "timeseries": {"broker", "storage", "errors", "metrics"},
    "upstream": {"broker", "protocol", "config", "errors", "metrics"},
    "metrics": set(),
}


def _part(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def _imported_parts(path: Path) -> set[str]:
    parts = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            if name.startswith("mqttproxy."):
                parts.add(name.split(".")[1])
    return parts


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_layers(path: Path) -> None:
    part = _part(path)
    if part not in ALLOWED:
        return  # app, __main__: the composition root may import everything
    forbidden = _imported_parts(path) - ALLOWED[part] - {part}
    assert not forbidden, f"{path.relative_to(PACKAGE)} imports {sorted(forbidden)}"


def test_only_upstream_imports_third_party_network_libraries() -> None:
    for path in PACKAGE.rglob("*.py"):
        source = path.read_text()
        if _part(path) != "upstream":
            assert "import gmqtt" not in source, path
            assert "from gmqtt" not in source, path
        if _part(path) != "webapp":
            assert "import aiohttp" not in source, path
            assert "from aiohttp" not in source, path


def test_protocol_does_no_io() -> None:
    for path in (PACKAGE / "protocol").rglob("*.py"):
        source = path.read_text()
        for banned in ("import asyncio", "import socket", "async def", "await "):
            assert banned not in source, f"{path.name} contains {banned!r}"
