"""BrokerStore (brokers.json) and jsonpos.line_of: round trips, encryption, errors pointing into the file."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from mqttproxy.errors import ConfigError
from mqttproxy.upstream.jsonpos import line_of
from mqttproxy.upstream.models import BrokerRecord, Route
from mqttproxy.upstream.store import BrokerStore

SECRET = "s3cr3t-Pa55w0rd"
KEY = "correct horse battery staple"


@pytest.fixture
def records(tmp_path: Path) -> list[BrokerRecord]:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    return [
        BrokerRecord(
            id="cloud",
            name="Cloud \u00e9",
            address="cloud.example",
            port=8883,
            username="gw",
            password=SecretStr(SECRET),
            use_tls=True,
            ca_cert_path=ca,
            failover=["backup:8884", "[::1]"],
            routes=[
                Route(filter="devices/+/telemetry", remap="site7/{1}/t", max_qos=1),
                Route(filter="local/#", exclude=["local/secret/#"], remap="{1}", retain=False),
                Route(direction="in", filter="cmd/#", remap="devices/{1}/cmd"),
            ],
        ),
        BrokerRecord(id="plain", name="Plain", address="10.0.0.2"),
        BrokerRecord(
            id="other", name="Other", address="h", username="u", password=SecretStr("p2"), enabled=False
        ),
    ]


def _line_of_text(text: str, needle: str, occurrence: int = 0) -> int:
    """1-based number of the line holding ``needle`` (its ``occurrence``-th match)."""
    return [n for n, line in enumerate(text.splitlines(), 1) if needle in line][occurrence]


def test_missing_file_loads_as_empty(tmp_path: Path) -> None:
    assert BrokerStore(tmp_path / "brokers.json", secret_key=None).load() == []
    assert BrokerStore(tmp_path / "no" / "dir" / "brokers.json", secret_key=KEY).load() == []


@pytest.mark.parametrize("secret_key", [None, KEY], ids=["clear", "encrypted"])
def test_save_then_load_round_trip(
    records: list[BrokerRecord], tmp_path: Path, secret_key: str | None
) -> None:
    store = BrokerStore(tmp_path / "brokers.json", secret_key=secret_key)
    store.save(records)
    loaded = BrokerStore(tmp_path / "brokers.json", secret_key=secret_key).load()
    assert loaded == records
    assert [r.id for r in loaded] == ["cloud", "plain", "other"]
    assert loaded[0].password is not None
    assert loaded[0].password.get_secret_value() == SECRET
    assert loaded[0].routes == records[0].routes
    assert loaded[1].password is None
    store.save([])
    assert store.load() == []


def test_file_is_readable_json_with_owner_only_mode(records: list[BrokerRecord], tmp_path: Path) -> None:
    path = tmp_path / "data" / "brokers.json"  # the directory is created
    store = BrokerStore(path, secret_key=None)
    store.save(records)
    store.save(records[1:])  # replacing keeps the mode and leaves nothing behind
    text = path.read_text(encoding="utf-8")
    assert text.startswith('{\n  "version": 1,\n  "brokers": [\n    {\n      "id": "plain",\n')
    assert text.endswith("}\n")
    document = json.loads(text)
    assert list(document) == ["version", "brokers"]
    assert document["version"] == 1
    assert [next(iter(b)) for b in document["brokers"]] == ["id", "id"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(os.listdir(path.parent)) == ["brokers.json"]


def test_non_ascii_is_kept_readable(records: list[BrokerRecord], tmp_path: Path) -> None:
    path = tmp_path / "brokers.json"
    BrokerStore(path, secret_key=None).save(records)
    assert '"name": "Cloud \u00e9"' in path.read_text(encoding="utf-8")


def test_secret_key_keeps_password_out_of_the_file(records: list[BrokerRecord], tmp_path: Path) -> None:
    path = tmp_path / "brokers.json"
    BrokerStore(path, secret_key=KEY).save(records)
    raw = path.read_bytes()
    assert SECRET.encode() not in raw
    assert b'"p2"' not in raw
    sealed = json.loads(raw)["brokers"][0]["password"]
    assert set(sealed) == {"encrypted"}
    loaded = BrokerStore(path, secret_key=KEY).load()
    assert [r.password.get_secret_value() if r.password else None for r in loaded] == [SECRET, None, "p2"]


def test_without_key_password_is_in_clear(records: list[BrokerRecord], tmp_path: Path) -> None:
    path = tmp_path / "brokers.json"
    BrokerStore(path, secret_key=None).save(records)
    assert json.loads(path.read_bytes())["brokers"][0]["password"] == SECRET


def _unchanged(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def test_encrypted_file_without_key(records: list[BrokerRecord], tmp_path: Path) -> None:
    path = tmp_path / "brokers.json"
    BrokerStore(path, secret_key=KEY).save(records)
    before = _unchanged(path)
    with pytest.raises(ConfigError) as caught:
        BrokerStore(path, secret_key=None).load()
    error = caught.value
    # The first encrypted password fails first.
    line = _line_of_text(path.read_text(), '"password": {')
    assert f"{path}:{line}: brokers[0].password: is encrypted" in str(error)
    assert "secret key" in str(error)
    assert (error.path, error.line) == (str(path), line)
    assert _unchanged(path) == before


def test_wrong_key(records: list[BrokerRecord], tmp_path: Path) -> None:
    path = tmp_path / "brokers.json"
    BrokerStore(path, secret_key=KEY).save(records)
    before = _unchanged(path)
    with pytest.raises(ConfigError, match="cannot be decrypted") as caught:
        BrokerStore(path, secret_key="another key").load()
    line = _line_of_text(path.read_text(), '"password": {')
    assert f"{path}:{line}: brokers[0].password" in str(caught.value)
    assert caught.value.line == line
    assert _unchanged(path) == before


@pytest.mark.parametrize(
    ("secret_key", "with_password", "warned"),
    [(None, True, True), (None, False, False), (KEY, True, False)],
    ids=["clear-password", "no-password", "encrypted"],
)
def test_clear_text_warning(
    records: list[BrokerRecord],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    secret_key: str | None,
    with_password: bool,
    warned: bool,
) -> None:
    caplog.set_level(logging.WARNING, logger="mqttproxy")
    store = BrokerStore(tmp_path / "brokers.json", secret_key=secret_key)
    store.save(records if with_password else records[1:2])
    store.load()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name.startswith("mqttproxy")]
    assert bool(warnings) == warned
    if warned:
        assert "clear text" in warnings[0].getMessage()
        assert str(store.path) in warnings[0].getMessage()


def _doc(*lines: str) -> str:
    return "\n".join(lines) + "\n"


GOOD = '    {"id": "a", "name": "A", "address": "h"},'
GOOD_B = '    {"id": "b", "name": "B", "address": "h"},'
CORRUPT = [
    ("empty-file", "", 1, "not valid JSON"),
    (
        "trailing-comma",
        _doc(
            "{",
            '  "version": 1,',
            '  "brokers": [',
            '    {"id": "a", "name": "A", "address": "h",}',
            "  ]",
            "}",
        ),
        4,
        "not valid JSON",
    ),
    ("unclosed", _doc("{", '  "version": 1,', '  "brokers": [', GOOD), 5, "not valid JSON"),
    ("top-level-list", _doc("[]"), 1, 'expected {"version": 1, "brokers": [...]}'),
    ("no-brokers", _doc('{"version": 1}'), 1, 'expected {"version": 1'),
    ("brokers-object", _doc("{", '  "version": 1,', '  "brokers": {}', "}"), 1, "expected"),
    (
        "bad-port",
        _doc(
            "{",
            '  "version": 1,',
            '  "brokers": [',
            GOOD,
            "    {",
            '      "id": "b", "name": "B", "address": "h",',
            '      "port": 70000',
            "    }",
            "  ]",
            "}",
        ),
        7,
        "brokers[1].port: Input should be less than or equal to 65535",
    ),
    (
        "unknown-field",
        _doc(
            "{",
            '  "brokers": [',
            "    {",
            '      "id": "a", "name": "A", "address": "h",',
            '      "colour": 1',
            "    }",
            "  ]",
            "}",
        ),
        5,
        "brokers[0].colour: unknown field",
    ),
    (
        "duplicate-id",
        _doc(
            "{",
            '  "brokers": [',
            GOOD,
            "    {",
            '      "name": "B", "address": "h",',
            '      "id": "a"',
            "    }",
            "  ]",
            "}",
        ),
        6,
        "brokers[1].id: 'a' is used twice",
    ),
    (
        "missing-name",
        _doc(
            "{",
            '  "brokers": [',
            GOOD,
            GOOD_B,
            "",
            "    {",
            '      "id": "c", "address": "h"',
            "    }",
            "  ]",
            "}",
        ),
        6,
        "brokers[2].name: Field required",
    ),
    (
        "route-filter",
        _doc(
            "{",
            '  "brokers": [',
            '    {"id": "a", "name": "A", "address": "h",',
            '     "routes": [',
            '       {"filter": "ok"},',
            '       {"direction": "out",',
            '        "filter": "a/#/b"}',
            "     ]}",
            "  ]",
            "}",
        ),
        7,
        "brokers[0].routes[1].filter: Value error, '#' must be the last level",
    ),
    (
        "route-remap",
        _doc(
            "{",
            '  "brokers": [',
            '    {"id": "a", "name": "A", "address": "h", "routes": [',
            '      {"filter": "a/+",',
            '       "remap": "{2}"}]}',
            "  ]",
            "}",
        ),
        5,
        "brokers[0].routes[0].remap: Value error, remap '{2}' uses {2}",
    ),
    (
        "infinite-delay",
        _doc(
            "{",
            '  "brokers": [',
            "    {",
            '      "id": "a", "name": "A", "address": "h",',
            '      "reconnect_max_delay": Infinity',
            "    }",
            "  ]",
            "}",
        ),
        5,
        "brokers[0].reconnect_max_delay: Input should be a finite number",
    ),
    (
        "address-not-a-host",
        _doc(
            "{",
            '  "brokers": [',
            '    {"id": "a", "name": "A",',
            '     "address": "mqtt..example"}',
            "  ]",
            "}",
        ),
        4,
        "brokers[0].address: Value error, 'mqtt..example' is not a host name or IP address",
    ),
    (
        "record-not-object",
        _doc("{", '  "brokers": [', GOOD, "    5", "  ]", "}"),
        4,
        "brokers[1]: Input should be",
    ),
    (
        "password-without-username",
        _doc(
            "{",
            '  "brokers": [',
            "    {",
            '      "id": "a", "name": "A", "address": "h", "password": "x"',
            "    }",
            "  ]",
            "}",
        ),
        4,
        "brokers[0].password: Value error, a password needs a username",
    ),
]


@pytest.mark.parametrize(("text", "line", "message"), [c[1:] for c in CORRUPT], ids=[c[0] for c in CORRUPT])
def test_corrupt_file(text: str, line: int, message: str, tmp_path: Path) -> None:
    path = tmp_path / "brokers.json"
    path.write_text(text, encoding="utf-8")
    before = _unchanged(path)
    with pytest.raises(ConfigError) as caught:
        BrokerStore(path, secret_key=None).load()
    assert f"{path}:{line}: " in str(caught.value)
    assert message in str(caught.value)
    assert caught.value.path == str(path)
    if not message.startswith("expected"):  # shape errors leave .line unset
        assert caught.value.line == line
    assert _unchanged(path) == before
    assert sorted(os.listdir(tmp_path)) == ["brokers.json"]


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [(c[1], c[2], c[3].split(":")[0]) for c in CORRUPT if c[3].startswith("brokers[")],
    ids=[c[0] for c in CORRUPT if c[3].startswith("brokers[")],
)
def test_corrupt_record_error_fields(text: str, line: int, key: str, tmp_path: Path) -> None:
    path = tmp_path / "brokers.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        BrokerStore(path, secret_key=None).load()
    assert caught.value.line == line
    assert caught.value.key == key.replace("[", ".").replace("]", "")


def test_undecodable_file(tmp_path: Path) -> None:
    path = tmp_path / "brokers.json"
    path.write_bytes(b'{"brokers": ["\xff"]}')
    before = _unchanged(path)
    with pytest.raises(ConfigError, match="cannot read") as caught:
        BrokerStore(path, secret_key=None).load()
    assert str(path) in str(caught.value)
    assert _unchanged(path) == before


@pytest.mark.parametrize("failing", ["replace", "fsync"], ids=["rename", "fsync"])
def test_failed_save_keeps_previous_file(
    records: list[BrokerRecord], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    path = tmp_path / "brokers.json"
    store = BrokerStore(path, secret_key=None)
    store.save(records[:1])
    before = path.read_bytes()

    def fail(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(OSError, match="disk full"):
        store.save(records)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["brokers.json", "ca.pem"]
    assert store.load() == records[:1]


# Line numbers below are those of the JSON text; '\\' is one backslash in the file.
POSITIONS_TEXT = _doc(
    "{",  # 1
    '  "s": "x{[\\"\\n]}",',  # 2
    '  "we\\"ird{": "\\"}\\"",',  # 3
    '  "obj":',  # 4
    "    {",  # 5
    '      "list": [',  # 6
    "        1,",  # 7
    '        {"k": "]", "deep": [',  # 8
    "          true,",  # 9
    "          [",  # 10
    "            null",  # 11
    "          ]",  # 12
    "        ]},",  # 13
    '        "last"',  # 14
    "      ],",  # 15
    '      "after": {"x": "}"}',  # 16
    "    },",  # 17
    '  "end": {}',  # 18
    "}",  # 19
)

POSITIONS: list[tuple[str, list[str | int], int]] = [
    ("root", [], 1),
    ("string-with-brackets-and-escapes", ["s"], 2),
    ("escaped-quote-in-key", ['we"ird{'], 3),
    ("object-value-on-next-line", ["obj"], 5),
    ("array-value", ["obj", "list"], 6),
    ("array-first", ["obj", "list", 0], 7),
    ("array-object", ["obj", "list", 1], 8),
    ("after-bracket-in-string", ["obj", "list", 1, "deep"], 8),
    ("nested-array-first", ["obj", "list", 1, "deep", 0], 9),
    ("nested-array-second", ["obj", "list", 1, "deep", 1], 10),
    ("deepest", ["obj", "list", 1, "deep", 1, 0], 11),
    ("after-nested", ["obj", "list", 2], 14),
    ("after-brace-in-string", ["obj", "after"], 16),
    ("into-object-after-brace", ["obj", "after", "x"], 16),
    ("last-key", ["end"], 18),
    ("missing-key", ["nope"], 1),
    ("missing-nested-key", ["obj", "nope"], 5),
    ("index-beyond", ["obj", "list", 9], 6),
    ("index-beyond-nested", ["obj", "list", 1, "deep", 1, 1], 10),
    ("into-scalar", ["obj", "list", 0, "x"], 7),
    ("key-into-array", ["obj", "list", "x"], 6),
    ("index-into-object", ["obj", 0], 5),
    ("index-into-string", ["s", 0], 2),
    ("into-empty-object", ["end", "x"], 18),
]


def test_positions_text_is_json() -> None:
    assert json.loads(POSITIONS_TEXT)["s"] == 'x{["\n]}'


@pytest.mark.parametrize(("path", "line"), [p[1:] for p in POSITIONS], ids=[p[0] for p in POSITIONS])
def test_line_of(path: list[str | int], line: int) -> None:
    assert line_of(POSITIONS_TEXT, path) == line


@pytest.mark.parametrize(
    ("text", "path", "line"),
    [
        ('{"a": {"b": [1, 2]}}', ["a", "b", 1], 1),
        ('\n\n  {"a":\n 1}', [], 3),
        ('\n\n  {"a":\n 1}', ["a"], 3),
        ("[\n[],\n[\n7]]", [1, 0], 4),
        ("[\n[],\n[\n7]]", [0, 0], 2),
        ("", ["a"], 1),
    ],
    ids=[
        "one-line",
        "leading-blank-lines",
        "key-on-value-line",
        "array-of-arrays",
        "empty-array",
        "empty-text",
    ],
)
def test_line_of_small(text: str, path: list[str | int], line: int) -> None:
    assert line_of(text, path) == line


def test_line_of_saved_file(records: list[BrokerRecord], tmp_path: Path) -> None:
    path = tmp_path / "brokers.json"
    BrokerStore(path, secret_key=None).save(records)
    text = path.read_text(encoding="utf-8")
    assert line_of(text, ["brokers", 1, "port"]) == _line_of_text(text, '"port"', 1)
    assert line_of(text, ["brokers", 0, "routes", 1, "exclude"]) == _line_of_text(text, '"exclude"', 1)
    assert line_of(text, ["brokers", 2, "password"]) == _line_of_text(text, '"password"', 1)


def test_unknown_format_version_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "brokers.json"
    path.write_text('{\n  "version": 9,\n  "brokers": []\n}\n')
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="version") as caught:
        BrokerStore(path, secret_key=None).load()
    assert f"{path}:2: version: 9" in str(caught.value)
    assert path.read_bytes() == before


def test_saving_clear_text_passwords_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mqttproxy")
    store = BrokerStore(tmp_path / "brokers.json", secret_key=None)
    store.save([BrokerRecord(id="a", name="A", address="h", username="u", password="p")])
    assert any("clear text" in record.getMessage() for record in caplog.records)
