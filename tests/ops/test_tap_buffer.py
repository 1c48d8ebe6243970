"""The tap's per-client buffer: filters per batch bucket, bounded, lossy for the tap alone."""

from __future__ import annotations

import json

from ccf_agent.ops.tap import TapClient, TapFilter, Taps, parse_filter

TARGETS = (("payouts", ("payouts", "archive")), ("default", ("logs",)))
DOCS = [json.dumps({"seq": i}).encode() for i in range(10)]
BUCKETS = [[1, 4, 7], [0, 2, 3, 5, 6, 8, 9]]  # the router's: payouts, then default


def seqs(client: TapClient) -> list[int]:
    lines, n = client.take()
    events = [json.loads(line) for line in lines.splitlines() if b'"event"' in line]
    assert len(events) == n
    return [e["event"]["seq"] for e in events]


def test_each_event_says_its_input_route_and_outputs() -> None:
    client = TapClient(TapFilter(route="payouts"))
    client.offer("app", DOCS, BUCKETS, TARGETS)
    line = client.take()[0].splitlines()[0]
    assert json.loads(line) == {"input": "app", "route": "payouts", "outputs": ["payouts", "archive"],
                                "event": {"seq": 1}}


def test_a_full_buffer_drops_and_counts_what_does_not_fit() -> None:
    client = TapClient(TapFilter(), capacity=4)
    client.offer("app", DOCS, BUCKETS, TARGETS)
    assert (client.held, client.dropped) == (4, 6)
    assert seqs(client) == [1, 4, 7, 0]
    client.offer("app", DOCS, BUCKETS, TARGETS)  # room again once sent
    assert (client.held, client.dropped) == (4, 12)


def test_route_output_and_input_filters_pick_whole_buckets() -> None:
    for want, expected in ((TapFilter(route="default"), [0, 2, 3, 5, 6, 8, 9]),
                           (TapFilter(output="archive"), [1, 4, 7]),
                           (TapFilter(input="other"), [])):
        client = TapClient(want)
        client.offer("app", DOCS, BUCKETS, TARGETS)
        assert seqs(client) == expected, want


def test_a_limit_takes_that_many_then_nothing_and_drops_nothing() -> None:
    client = TapClient(TapFilter(limit=5))
    client.offer("app", DOCS, BUCKETS, TARGETS)
    client.offer("app", DOCS, BUCKETS, TARGETS)
    assert (client.held, client.dropped, client.finished) == (5, 0, False)
    assert seqs(client) == [1, 4, 7, 0, 2]
    assert client.finished


def test_nobody_tapping_is_an_empty_client_list() -> None:
    taps = Taps()
    assert not taps.clients  # the dispatcher's one check per batch
    client = taps.attach(TapFilter())
    assert client is not None and taps.clients
    client.offer("app", DOCS, BUCKETS, TARGETS)
    client.offer("app", DOCS, BUCKETS, TARGETS)
    taps.detach(client)
    assert not taps.clients and taps.total_dropped() == client.dropped


def test_at_most_max_taps_attach() -> None:
    taps = Taps()
    attached = [taps.attach(TapFilter()) for _ in range(5)]
    assert attached[-1] is None and all(attached[:-1])


def test_a_name_the_running_config_lacks_is_refused() -> None:
    taps = Taps()
    taps.names = {"input": ("app",), "route": ("payouts", "default"), "output": ("logs", "payouts")}
    assert taps.unknown(TapFilter(route="payout")) == "no route named 'payout' (routes: payouts, default)"
    assert taps.unknown(TapFilter(input="app", output="logs")) is None


def test_request_parameters_are_checked() -> None:
    assert parse_filter({"route": "payouts", "limit": "3"}) == TapFilter(route="payouts", limit=3)
    assert parse_filter({"limit": "0"}) == "limit must be a whole number greater than 0, not '0'"
    assert parse_filter({"rout": "x"}) == "unknown parameter(s): rout"


def test_a_client_is_handed_a_sample_of_at_most_its_rate_per_second() -> None:
    now = [100.0]
    client = TapClient(TapFilter(), capacity=10_000, rate=1000, clock=lambda: now[0])
    docs = [json.dumps({"seq": i}).encode() for i in range(5000)]
    targets = (("default", ("logs",)),)
    client.offer("app", docs, [list(range(5000))], targets)
    assert len(seqs(client)) == 1000 and client.dropped == 4000  # a second's worth at once
    now[0] += 0.5
    client.offer("app", docs, [list(range(5000))], targets)
    assert len(seqs(client)) == 500 and client.dropped == 8500
