"""SubscriptionTrie and RetainedStore against the reference matcher topic_matches."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from mqttproxy.broker.message import Message
from mqttproxy.broker.retained import RetainedStore
from mqttproxy.broker.topic_trie import SubscriptionTrie
from mqttproxy.protocol.topics import topic_matches

LEVELS = ["a", "b", "", "$SYS", "$aws"]
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


@settings(max_examples=300, deadline=None)
@given(filters=st.lists(_filters(), min_size=1, max_size=8, unique=True), topic=_topics())
def test_trie_agrees_with_reference_matcher(filters: list[str], topic: str) -> None:
    trie: SubscriptionTrie[str] = SubscriptionTrie()
    for index, topic_filter in enumerate(filters):
        trie.subscribe(topic_filter, topic_filter, index % 3)
    expected = {f: i % 3 for i, f in enumerate(filters) if topic_matches(f, topic)}
    assert dict(trie.match(topic)) == expected
    assert dict(trie.match(topic)) == expected  # cached answer is the same


@settings(max_examples=300, deadline=None)
@given(topics=st.lists(_topics(), min_size=1, max_size=10, unique=True), topic_filter=_filters())
def test_retained_store_agrees_with_reference_matcher(topics: list[str], topic_filter: str) -> None:
    store = RetainedStore()
    for topic in topics:
        store.store(Message(topic, b"x", 0, True, "test", 0.0))
    found = sorted(message.topic for message in store.match(topic_filter))
    assert found == sorted(topic for topic in topics if topic_matches(topic_filter, topic))


def test_one_subscriber_many_filters_gets_highest_qos() -> None:
    trie: SubscriptionTrie[str] = SubscriptionTrie()
    trie.subscribe("a/#", "s", 0)
    trie.subscribe("a/+", "s", 2)
    trie.subscribe("a/b", "s", 1)
    assert trie.match("a/b") == (("s", 2),)


def test_unsubscribe_prunes_and_invalidates_cache() -> None:
    trie: SubscriptionTrie[str] = SubscriptionTrie()
    trie.subscribe("a/b/c", "s", 1)
    assert trie.match("a/b/c") == (("s", 1),)
    assert trie.unsubscribe("a/b/c", "s")
    assert trie.match("a/b/c") == ()
    assert not trie.unsubscribe("a/b/c", "s")
    assert len(trie) == 0
    assert trie._root.children == {}  # no empty branches left behind


def test_resubscribe_replaces_qos_without_counting_twice() -> None:
    trie: SubscriptionTrie[str] = SubscriptionTrie()
    trie.subscribe("x", "s", 0)
    trie.subscribe("x", "s", 2)
    assert len(trie) == 1
    assert trie.match("x") == (("s", 2),)


def test_retained_empty_payload_removes_and_prunes() -> None:
    store = RetainedStore()
    store.store(Message("a/b", b"1", 0, True, "t", 0.0))
    store.store(Message("a", b"2", 0, True, "t", 0.0))
    store.store(Message("a/b", b"", 0, True, "t", 0.0))
    assert len(store) == 1
    assert [m.topic for m in store.match("#")] == ["a"]
    store.store(Message("a", b"", 0, True, "t", 0.0))
    assert len(store) == 0
    assert store._root.children == {}


def test_many_topics_cache_stays_bounded() -> None:
    trie: SubscriptionTrie[str] = SubscriptionTrie()
    trie.subscribe("#", "s", 0)
    for a, b in itertools.product(range(300), range(300)):
        trie.match(f"{a}/{b}")
    assert len(trie._cache) <= 65_536
