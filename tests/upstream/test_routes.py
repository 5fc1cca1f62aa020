"""Route rules: wildcard captures, remap templates and the per-direction route table (pure, no I/O)."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mqttproxy.protocol.topics import topic_matches
from mqttproxy.upstream import routes
from mqttproxy.upstream.routes import (
    Resolved,
    RouteRule,
    RouteTable,
    captures,
    check_template,
    render,
    wildcard_count,
)

# (filter, topic, captures); None where the filter does not match.
CAPTURES = [
    ("exact", "a/b", "a/b", []),
    ("exact-miss", "a/b", "a/c", None),
    ("plus", "a/+", "a/x", ["x"]),
    ("plus-empty-level", "a/+", "a/", [""]),
    ("plus-first", "+/b", "/b", [""]),
    ("plus-too-short", "a/+", "a", None),
    ("plus-too-long", "a/+", "a/x/y", None),
    ("two-plus", "+/b/+", "x/b/y", ["x", "y"]),
    ("hash-all", "#", "a/b/c", ["a/b/c"]),
    ("hash-one", "a/#", "a/b", ["b"]),
    ("hash-many", "a/#", "a/b/c", ["b/c"]),
    ("hash-parent", "a/#", "a", [None]),  # matched the parent level itself: no capture
    ("hash-empty-level", "a/#", "a/", [""]),  # matched one empty level
    ("hash-keeps-empty-levels", "a/#", "a//b/", ["/b/"]),
    ("plus-then-hash", "+/x/#", "d1/x/y/z", ["d1", "y/z"]),
    ("plus-then-hash-parent", "+/x/#", "d1/x", ["d1", None]),
    ("hash-miss", "a/#", "b/a", None),
    ("dollar-vs-hash", "#", "$SYS/x", None),
    ("dollar-vs-plus", "+/x", "$SYS/x", None),
    ("dollar-literal", "$SYS/#", "$SYS/x", ["x"]),
]


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"), [c[1:] for c in CAPTURES], ids=[c[0] for c in CAPTURES]
)
def test_captures(topic_filter: str, topic: str, expected: list[str | None] | None) -> None:
    assert captures(topic_filter, topic) == expected


# (template, topic, captures, result); None: a "#" that matched its parent level
RENDERS: list[tuple[str, str, str, list[str | None], str]] = [
    ("literal", "x/y", "a", [], "x/y"),
    ("one", "s/{1}/t", "d/d1/t", ["d1"], "s/d1/t"),
    ("two-swapped", "{2}/{1}", "a/b", ["a", "b"], "b/a"),
    ("repeated", "{1}/{1}", "a", ["a"], "a/a"),
    ("topic", "site7/{topic}", "a/b", [], "site7/a/b"),
    ("topic-and-capture", "{topic}/{1}", "a/b", ["b"], "a/b/b"),
    ("hash-capture", "x/{1}", "a/b/c", ["b/c"], "x/b/c"),
    ("hash-parent-drops-separator", "x/{1}", "a", [None], "x"),
    ("hash-parent-second", "s/{1}/{2}", "d1/x", ["d1", None], "s/d1"),
    ("hash-parent-at-start", "{1}", "a", [None], ""),
    ("hash-empty-level-keeps-separator", "x/{1}", "a/", [""], "x/"),
    ("plus-empty-keeps-separator", "x/{1}/y", "a//b", [""], "x//y"),
    ("plus-empty-then-capture", "x/{1}/{2}", "a/", ["", "b"], "x//b"),
    ("empty-levels-kept", "x//{1}/", "a/b", ["b"], "x//b/"),
    ("trailing-slash-capture", "x/{1}", "a/b/", ["b/"], "x/b/"),
]


@pytest.mark.parametrize(
    ("template", "topic", "found", "expected"),
    [r[1:] for r in RENDERS],
    ids=[r[0] for r in RENDERS],
)
def test_render(template: str, topic: str, found: list[str | None], expected: str) -> None:
    assert render(template, topic, found) == expected


@pytest.mark.parametrize(
    ("topic_filter", "count"),
    [("a", 0), ("+", 1), ("#", 1), ("+/+/#", 3), ("a/+b", 0), ("$SYS/+", 1)],
    ids=["none", "plus", "hash", "three", "not-whole-level", "dollar"],
)
def test_wildcard_count(topic_filter: str, count: int) -> None:
    assert wildcard_count(topic_filter) == count


@pytest.mark.parametrize(
    ("template", "topic_filter"),
    [
        ("site7/{1}/t", "devices/+/telemetry"),
        ("{2}/{1}", "+/#"),
        ("{topic}", "a"),
        ("p/{topic}/{1}", "a/#"),
        ("plain/topic", "a/b"),
        ("{01}", "+"),
    ],
    ids=["one-of-one", "two-of-two", "topic-no-wildcards", "topic-and-capture", "literal", "leading-zero"],
)
def test_check_template_accepts(template: str, topic_filter: str) -> None:
    check_template(template, topic_filter)


@pytest.mark.parametrize(
    ("template", "topic_filter", "message"),
    [
        ("", "a/+", "empty"),
        ("{1}", "a/b", "has 0 wildcard"),
        ("{2}", "a/+", "has 1 wildcard"),
        ("{0}", "a/+", "{0}"),
        ("x/+", "a/+", "no wildcards"),
        ("x/#", "a/#", "no wildcards"),
        ("x/{1}+", "a/+", "no wildcards"),
        ("x/{", "a/+", "braces"),
        ("x/}", "a/+", "braces"),
        ("x/{a}", "a/+", "braces"),
        ("x/{-1}", "a/+", "braces"),
        ("x/{ 1}", "a/+", "braces"),
        ("{{1}}", "a/+", "braces"),
        ("{Topic}", "a/+", "braces"),
    ],
    ids=[
        "empty",
        "no-wildcards",
        "beyond",
        "zero",
        "plus",
        "hash",
        "plus-after-placeholder",
        "open-brace",
        "close-brace",
        "name",
        "negative",
        "space",
        "double-braces",
        "topic-case",
    ],
)
def test_check_template_rejects(template: str, topic_filter: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("}", r"\}")):
        check_template(template, topic_filter)


def test_check_template_rejects_nul() -> None:
    # It would render topic names MQTT forbids [MQTT-4.7.3-2].
    with pytest.raises(ValueError, match="remap"):
        check_template("a\x00b/{1}", "x/+")


def rule(topic_filter: str, remap: str | None = None, *exclude: str) -> RouteRule:
    return RouteRule(topic_filter, exclude, remap, 1, True)


APPLY = [
    ("no-remap", rule("a/+"), "a/b", "a/b"),
    ("no-match", rule("a/+"), "b/b", None),
    ("remap-capture", rule("devices/+/telemetry", "site7/{1}/t"), "devices/d1/telemetry", "site7/d1/t"),
    ("remap-capture-miss", rule("devices/+/telemetry", "site7/{1}/t"), "devices/d1/status", None),
    ("add-prefix", rule("#", "site7/{topic}"), "a/b", "site7/a/b"),
    ("add-prefix-empty-levels", rule("#", "site7/{topic}"), "/a//b/", "site7//a//b/"),
    ("strip-prefix", rule("local/#", "{1}"), "local/a/b", "a/b"),
    ("strip-prefix-keeps-trailing", rule("local/#", "{1}"), "local/a/", "a/"),
    ("strip-prefix-to-nothing", rule("local/#", "{1}"), "local", None),
    ("move-prefix", rule("local/#", "remote/{1}"), "local/a", "remote/a"),
    ("move-prefix-parent", rule("local/#", "remote/{1}"), "local", "remote"),
    ("plus-and-hash", rule("+/data/#", "out/{1}/{2}"), "d1/data/x/y", "out/d1/x/y"),
    ("plus-and-hash-parent", rule("+/data/#", "out/{1}/{2}"), "d1/data", "out/d1"),
    ("excluded", rule("a/#", None, "a/secret/#"), "a/secret/x", None),
    ("excluded-parent", rule("a/#", None, "a/secret/#"), "a/secret", None),
    ("not-excluded", rule("a/#", None, "a/secret/#"), "a/public", "a/public"),
    ("excluded-plus", rule("a/#", "b/{1}", "a/+/raw"), "a/x/raw", None),
    ("second-exclude", rule("#", None, "x", "y/+"), "y/1", None),
    ("dollar-vs-hash", rule("#"), "$SYS/load", None),
    ("dollar-vs-plus", rule("+/load"), "$SYS/load", None),
    ("dollar-literal", rule("$SYS/#", "gw/{1}"), "$SYS/load", "gw/load"),
    ("dollar-not-first-level", rule("+/$x"), "a/$x", "a/$x"),
]


@pytest.mark.parametrize(("route", "topic", "expected"), [a[1:] for a in APPLY], ids=[a[0] for a in APPLY])
def test_rule_apply(route: RouteRule, topic: str, expected: str | None) -> None:
    assert route.apply(topic) == expected


def test_hash_over_trailing_empty_level_keeps_the_separator() -> None:
    # "a/" is not "a" itself: '#' matches one empty level there, so the two
    # topics must not land on the same remapped topic.
    route = rule("a/#", "x/{1}")
    assert route.apply("a") == "x"
    assert route.apply("a/") == "x/"


def test_table_first_matching_rule_decides() -> None:
    table = RouteTable(
        [
            RouteRule("a/b", (), "first", 0, True),
            RouteRule("a/#", ("a/skip",), "second/{1}", 2, False),
            RouteRule("#", (), None, 1, True),
        ]
    )
    assert table.resolve("a/b") == Resolved("first", b"first", 0, True)
    assert table.resolve("a/c") == Resolved("second/c", b"second/c", 2, False)
    # excluded by the second rule: falls through to the third
    assert table.resolve("a/skip") == Resolved("a/skip", b"a/skip", 1, True)
    assert table.resolve("b/\u00e9") == Resolved("b/\u00e9", "b/\u00e9".encode(), 1, True)
    assert table.resolve("$SYS/x") is None


def test_table_truthiness_and_no_rules() -> None:
    assert not RouteTable([])
    assert RouteTable([]).resolve("a") is None
    assert RouteTable([rule("a")])


def test_table_caches_per_topic() -> None:
    table = RouteTable([rule("a/+", "b/{1}")])
    first = table.resolve("a/x")
    assert first is not None
    assert table.resolve("a/x") is first
    assert table.resolve("a/y") is not first
    assert table.resolve("nope") is None
    assert table.resolve("nope") is None


def test_table_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(routes, "_CACHE_LIMIT", 4)
    table = RouteTable([rule("#")])
    first = table.resolve("t/0")
    for index in range(1, 11):
        table.resolve(f"t/{index}")
        assert len(table._cache) <= 4
    again = table.resolve("t/0")
    assert again == first
    assert again is not first  # evicted and resolved anew


def test_default_cache_limit_is_large() -> None:
    assert routes._CACHE_LIMIT >= 1024


LEVELS = ["a", "b", "", "$SYS"]
FILTER_LEVELS = [*LEVELS, "+"]


def _topics() -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(LEVELS), min_size=1, max_size=4).map("/".join).filter(bool)


def _filters() -> st.SearchStrategy[str]:
    body = st.lists(st.sampled_from(FILTER_LEVELS), min_size=0, max_size=4)
    return (
        st.tuples(body, st.booleans())
        .map(lambda parts: "/".join([*parts[0], "#"] if parts[1] else parts[0]))
        .filter(bool)
    )


@settings(max_examples=400, deadline=None)
@given(topic_filter=_filters(), topic=_topics())
def test_rule_without_remap_agrees_with_topic_matches(topic_filter: str, topic: str) -> None:
    applied = RouteRule(topic_filter, (), None, 0, True).apply(topic)
    assert (applied == topic) == topic_matches(topic_filter, topic)
    assert applied in (topic, None)


@settings(max_examples=400, deadline=None)
@given(
    levels=st.lists(st.sampled_from(LEVELS), min_size=1, max_size=5),
    wild=st.lists(st.booleans(), min_size=5, max_size=5),
    cut=st.integers(min_value=0, max_value=5),
    use_hash=st.booleans(),
)
def test_mirrored_template_gives_the_topic_back(
    levels: list[str], wild: list[bool], cut: int, use_hash: bool
) -> None:
    """A template that puts each capture where its wildcard stood rebuilds the topic."""
    topic = "/".join(levels)
    head = levels[: min(cut, len(levels))] if use_hash else levels
    filter_levels: list[str] = []
    template: list[str] = []
    wildcards = 0
    for index, level in enumerate(head):
        if wild[index]:
            wildcards += 1
            filter_levels.append("+")
            template.append(f"{{{wildcards}}}")
        else:
            filter_levels.append(level)
            template.append(level)
    if use_hash:
        filter_levels.append("#")
        template.append(f"{{{wildcards + 1}}}")
    topic_filter, remap = "/".join(filter_levels), "/".join(template)
    assume(topic and topic_matches(topic_filter, topic))
    # '#' over one trailing empty level ("a/#" on "a/") is the bug tested above.
    assume(not (use_hash and len(levels) == len(head) + 1 and levels[-1] == ""))
    check_template(remap, topic_filter)
    assert RouteRule(topic_filter, (), remap, 0, True).apply(topic) == topic
