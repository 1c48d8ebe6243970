"""`{{ field }}` / `{{ value }}` templating of annotations."""

from __future__ import annotations

import pytest

from ccf_agent.alerts.template import TemplateError, compile_template


def test_alert_variables_come_first_then_record_fields_dotted_or_not():
    t = compile_template("{{ value }} {{ amount }} {{ error.code }} {{ @timestamp }}")
    record = {"value": "not this", "amount": 25000, "error": {"code": "E1"}, "@timestamp": "2024-01-15"}
    assert t.render({"value": 0.15}, record) == "0.15 25000 E1 2024-01-15"


def test_prometheus_style_dollar_value_is_accepted():
    assert compile_template("rate {{ $value }}%").render({"value": 12.5}) == "rate 12.5%"


def test_a_missing_name_renders_empty():
    assert compile_template("[{{ nothing }}]").render({}, {}) == "[]"


def test_numbers_read_like_numbers_never_in_exponent_form():
    t = compile_template("{{ a }} {{ b }} {{ c }} {{ d }}")
    assert t.render({"a": 12345.0, "b": 13.04347, "c": 0.130434, "d": 3}) == "12345 13.04 0.1304 3"


@pytest.mark.parametrize("text", ["{{ value }", "{ value }}", "{{ }}", "{{ two words }}"])
def test_a_malformed_placeholder_is_an_error_at_load(text):
    with pytest.raises(TemplateError):
        compile_template(text)
