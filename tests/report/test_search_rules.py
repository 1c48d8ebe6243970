"""What the search source reads and asks, without a cluster."""

from __future__ import annotations

import re
from datetime import date

import pytest
import yaml

from ccf_agent.config import parse_config
from ccf_agent.report.figures import day_window
from ccf_agent.report.search import SearchError, choose_outputs, glob_regexp, index_names, resolve_fields


def config(outputs: dict, routes: list | None = None, report: dict | None = None):
    raw = {"state_dir": "/tmp/x", "inputs": [{"id": "a", "paths": ["/var/log/app/*.log"]}],
           "outputs": {n: ({"type": "elasticsearch", "hosts": [h]} if isinstance(h, str) else h)
                       for n, h in outputs.items()}, "routes": routes or []}
    if report:
        raw["report"] = report
    return parse_config(yaml.safe_dump(raw, sort_keys=False))


ES = "http://es:9200"
PAYOUTS = {"name": "payouts", "when": {"field": "message", "icontains": "payout"}, "output": "payouts"}


def names(cfg):
    outputs, notes = choose_outputs(cfg, cfg.report.outputs)
    return [o.name for o in outputs], notes


def test_routed_outputs_are_read_together_each_record_once():
    assert names(config({"logs": ES, "payouts": ES}, [PAYOUTS])) == (["logs", "payouts"], [])


def test_an_output_that_also_gets_a_fan_out_copy_is_read_alone():
    routes = [{**PAYOUTS, "output": ["payouts", "archive"]}]
    cfg = config({"logs": ES, "payouts": ES, "archive": ES}, routes)
    # archive receives nothing by default; payouts and archive hold the same records: read one of them.
    assert names(cfg) == (["logs", "payouts"], [])
    routes = [{**PAYOUTS, "output": ["payouts", "logs"]}]
    assert names(config({"logs": ES, "payouts": ES}, routes)) == (["logs"], [])


def test_records_routed_to_a_file_output_are_named_as_not_counted():
    cfg = config({"logs": ES, "payouts": {"type": "file", "path": "/tmp/p"}}, [PAYOUTS])
    assert names(cfg) == (["logs"], ["route payouts go to no output the report reads: not counted"])


def test_outputs_named_in_the_report_section_are_read_as_named():
    cfg = config({"logs": ES, "payouts": ES}, [PAYOUTS], {"outputs": ["payouts"]})
    assert names(cfg) == (["payouts"], [])


def test_a_dated_index_is_read_for_every_utc_day_the_window_touches():
    w = day_window(date(2024, 6, 1), "Europe/Berlin")  # 2024-05-31 22:00Z to 2024-06-01 22:00Z
    assert index_names("ccf-logs-%{+yyyy.MM.dd}", w) == ["ccf-logs-2024.05.31", "ccf-logs-2024.06.01"]
    assert index_names("ccf-logs-%{+yyyy.MM.dd}", day_window(date(2024, 6, 1), "UTC")) == ["ccf-logs-2024.06.01"]
    assert index_names("ccf-logs", w) == ["ccf-logs"]


def test_an_index_named_from_the_records_fields_is_read_as_a_wildcard():
    w = day_window(date(2024, 6, 1), "UTC")
    assert index_names("ccf-%{[service]:x}-%{+yyyy.MM.dd}", w) == ["ccf-*-2024.06.01"]
    assert index_names("ccf-%{[service]:x}", w) == ["ccf-*"]


@pytest.mark.parametrize(("glob", "path", "match"), [
    ("combined*.log*", "/var/log/app/combined.log", True),
    ("combined*.log*", "/var/log/app/combined.log.2.gz", True),
    ("combined*.log*", "/var/log/app/combined1.log", True),
    ("combined*.log*", "/var/log/app/error.log", False),
    ("combined*.log*", "/var/log/combined.logs/error.log", False),
    ("app-[ab].log", "/x/app-a.log", True),
    ("app-[!ab].log", "/x/app-a.log", False),
    ("a+b?.log", "/x/a+b1.log", True),
])
def test_a_source_glob_is_a_lucene_regexp_on_the_whole_path(glob, path, match):
    # Lucene's regexp is anchored and its escapes are Python's for these characters.
    assert bool(re.fullmatch(glob_regexp(glob), path)) is match


def mapping(**per_index):
    return {index: {"mappings": {name: {"full_name": name, "mapping": {name.rsplit(".", 1)[-1]: {"type": kind}}}
                                 for name, kind in fields.items()}} for index, fields in per_index.items()}


def test_keyword_fields_are_used_as_they_are_and_text_through_their_keyword_subfield():
    m = mapping(a={"level": "keyword", "message": "text", "message.keyword": "keyword", "amount": "long"},
                b={"level": "keyword", "message": "text", "message.keyword": "keyword"})
    fields = resolve_fields(m)
    assert (fields["level"], fields["message"], fields["error"], fields["amount"]) == (
        "level", "message.keyword", "error", "amount")


def test_a_field_keyword_in_one_index_and_text_in_another_is_refused_with_both_named():
    m = mapping(a={"level": "keyword"}, b={"level": "text", "level.keyword": "keyword"})
    with pytest.raises(SearchError, match=r"level is keyword in some .*\(a: keyword, b: text\)"):
        resolve_fields(m)


def test_text_without_a_keyword_subfield_is_refused_with_the_remedy():
    with pytest.raises(SearchError, match="run `ccf-agent setup`"):
        resolve_fields(mapping(a={"message": "text"}))


def test_an_amount_mapped_as_text_is_refused():
    with pytest.raises(SearchError, match="amount is not numeric in a: text"):
        resolve_fields(mapping(a={"amount": "text"}))
