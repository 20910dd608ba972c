"""Address parsing, job placement and backoff: pure functions, no I/O."""

from __future__ import annotations

import random

import pytest

from trigear.client.placement import Address, Backoff, Placement, parse_address, parse_addresses


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("127.0.0.1:4730", Address("127.0.0.1", 4730)),
        ("127.0.0.1", Address("127.0.0.1", 4730)),
        ("gear.example:1", Address("gear.example", 1)),
        (" host:65535 ", Address("host", 65535)),
        ("[::1]:4731", Address("::1", 4731)),
        ("[::1]", Address("::1", 4730)),
        ("::1", Address("::1", 4730)),
        (("10.0.0.2", 4731), Address("10.0.0.2", 4731)),
    ],
)
def test_parse_address(spec: str | tuple[str, int], expected: Address) -> None:
    assert parse_address(spec) == expected


@pytest.mark.parametrize(
    "spec", ["", " ", ":4730", "host:", "host:0", "host:65536", "host:x", "[::1", "[]:1", "[::1]x"]
)
def test_parse_address_rejects(spec: str) -> None:
    with pytest.raises(ValueError, match=r"address|port"):
        parse_address(spec)


def test_address_str_round_trips() -> None:
    for a in (Address("127.0.0.1", 4730), Address("::1", 9)):
        assert parse_address(str(a)) == a


def test_parse_addresses_rejects_empty_and_duplicates() -> None:
    with pytest.raises(ValueError, match="at least one"):
        parse_addresses([])
    with pytest.raises(ValueError, match="duplicate"):
        parse_addresses(["a:1", "a:1"])
    with pytest.raises(ValueError, match="duplicate"):
        parse_addresses(["a", "a:4730"])


def test_placement_hashes_uniques_the_same_whatever_the_order() -> None:
    servers = [Address(f"10.0.0.{i}", 4730) for i in range(5)]
    shuffled = servers[:]
    random.Random(7).shuffle(shuffled)
    a, b = Placement(servers), Placement(shuffled)
    seen = set()
    for i in range(200):
        key = b"job-%d" % i
        assert a.order(key, b"") == b.order(key, b"")
        seen.add(a.order(key, b"")[0])
    assert seen == set(servers), "uniques spread over every server"


def test_placement_order_is_a_failover_ring() -> None:
    servers = [Address("a", 1), Address("b", 1), Address("c", 1)]
    order = Placement(servers).order(b"k", b"")
    assert sorted(order) == servers
    i = servers.index(order[0])
    assert order == [servers[(i + k) % 3] for k in range(3)]


def test_placement_dash_unique_hashes_the_payload() -> None:
    p = Placement([Address("a", 1), Address("b", 1), Address("c", 1)])
    firsts = {p.order(b"-", b"payload-%d" % i)[0] for i in range(50)}
    assert len(firsts) > 1
    assert p.order(b"-", b"same") == p.order(b"-", b"same")


def test_placement_round_robin_without_unique() -> None:
    servers = [Address("a", 1), Address("b", 1), Address("c", 1)]
    p = Placement(servers)
    firsts = [p.order(b"", b"x")[0] for _ in range(6)]
    assert firsts == servers * 2
    assert Placement([servers[0]]).order(b"", b"") == [servers[0]]


def test_backoff_grows_caps_and_resets() -> None:
    b = Backoff(initial=0.1, maximum=1.0)
    assert b.delay() == 0
    assert not b.is_down(0.0)
    delays = [b.failed(100.0) for _ in range(10)]
    assert 0.05 <= delays[0] <= 0.1
    assert all(d <= 1.0 for d in delays)
    assert delays[-1] >= 0.5
    assert b.is_down(100.1)
    assert not b.is_down(101.1)
    b.succeeded()
    assert b.failures == 0
    assert not b.is_down(100.0)
    b.failures = 10_000
    assert b.delay() <= 1.0
