"""Redaction: secrets are masked in the shipped document and in the record routes and alerts see."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from ccf_agent.pipeline.redact import RedactConfig, Redactor, card_spans, luhn
from tests.pipeline.helpers import OptionError, make, one, run

CARD = "4242424242424242"  # Stripe's test Visa: passes Luhn
KEY = "sk_live_51HxYzAbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
M = "[REDACTED]"


def winston(**fields: Any) -> bytes:
    return orjson.dumps({"level": "info", "message": "m", **fields, "service": "click-clack-cashflow",
                         "timestamp": "2024-01-15 10:30:00"})


def everywhere(doc: dict[str, Any], rec: dict[str, Any], needle: str) -> bool:
    return needle in orjson.dumps(doc).decode() or needle in orjson.dumps(rec).decode()


# ---------------------------------------------------------------- fields by name


def test_the_seeds_payment_method_id_is_masked_by_default() -> None:
    doc, rec = one(make(), winston(message="Payout processed", paymentMethodId="pm_abc123", amount=1000))
    assert doc["paymentMethodId"] == M and rec["paymentMethodId"] == M
    assert doc["amount"] == 1000 and doc["message"] == "Payout processed"


def test_masked_top_level_fields_keep_the_line_bytes_around_them() -> None:
    line = winston(paymentMethodId="pm_abc123", amount=1000)
    raw = run(make(), [line]).docs[0]
    assert raw.startswith(line[:-1].replace(b'"pm_abc123"', b'"[REDACTED]"'))


def test_names_match_case_insensitively_at_any_depth() -> None:
    doc, rec = one(make(), winston(req={"headers": {"Authorization": "Basic dXNlcjpwYXNz", "host": "api"}},
                                   items=[{"TOKEN": "t1"}]))
    assert doc["req"]["headers"] == {"Authorization": M, "host": "api"}
    assert doc["items"] == [{"TOKEN": M}] and rec["items"] == [{"TOKEN": M}]


def test_drop_fields_are_removed_entirely() -> None:
    p = make({"redact": {"fields": [], "drop_fields": ["stripeKeys"]}})
    doc, rec = one(p, winston(stripeKeys={"secret": "x"}, keep=1))
    assert "stripeKeys" not in doc and "stripeKeys" not in rec and doc["keep"] == 1
    doc, _ = one(p, b'{"stripeKeys":"x"}')
    assert "stripeKeys" not in doc


def test_configured_fields_replace_the_default_list() -> None:
    doc, _ = one(make({"redact": {"fields": ["userId"]}}), winston(userId="user_7", paymentMethodId="pm_1"))
    assert doc["userId"] == M and doc["paymentMethodId"] == "pm_1"


def test_a_duplicated_key_is_masked_in_both_places() -> None:
    # orjson keeps the last of two equal keys, but the raw bytes hold both.
    raw = run(make(), [b'{"token":"first","message":"m","token":"second"}']).docs[0]
    assert b"first" not in raw and b"second" not in raw and orjson.loads(raw)["token"] == M


# ---------------------------------------------------------------- patterns in free text


@pytest.mark.parametrize("text", [
    f"card {CARD} declined",
    "card 4242 4242 4242 4242 declined",
    "card 4242-4242-4242-4242 declined",
    "amex 3782 822463 10005 ok",
    "card=5555555555554444;",
    "4242424242424242",
])
def test_card_numbers_in_free_text_are_masked(text: str) -> None:
    doc, rec = one(make(), winston(message=text))
    digits = "".join(c for c in text if c.isdigit())
    assert digits[-12:] not in orjson.dumps(doc).decode().replace(" ", "").replace("-", "")
    assert M in doc["message"] and doc["message"] == rec["message"]


def test_card_numbers_in_keys_are_masked_too() -> None:
    doc, rec = one(make(), winston(**{f"card {CARD}": 1}))
    assert not everywhere(doc, rec, CARD) and doc[f"card {M}"] == 1


@pytest.mark.parametrize("text", [
    "order 4242424242424241 shipped",  # fails Luhn
    "trace 1795755416993827890",  # an epoch in nanoseconds: first digit not 2-6
    "id 42424242424",  # too short
    "2024-01-15 10:30:00 payout 12345",
])
def test_numbers_that_are_not_cards_stay(text: str) -> None:
    doc, _ = one(make(), winston(message=text))
    assert doc["message"] == text


def test_json_numbers_are_not_free_text() -> None:
    doc, _ = one(make(), winston(wt=4242424242424242, note=f"{CARD}"))
    assert doc["wt"] == 4242424242424242 and doc["note"] == M


def test_a_card_followed_by_more_digit_groups_is_still_found() -> None:
    assert card_spans("pan 4242 4242 4242 4242 12 28 cvc") == [(4, 23)]
    [(a, b)] = card_spans("x 12 4242424242424242 34")
    assert a == 5 and b >= 21  # the longest run of groups passing Luhn: here with "34" (harmless)


@pytest.mark.parametrize("key", [KEY, "sk_test_4eC39HqLyjWDarjtT1zdp7dc", "rk_live_abc123DEF", "whsec_abcDEF0123+/="])
def test_stripe_secrets_are_masked(key: str) -> None:
    doc, rec = one(make(), winston(message=f"stripe init with {key}", cfg={"k": key}))
    assert not everywhere(doc, rec, key)
    assert doc["message"] == f"stripe init with {M}"


def test_publishable_stripe_keys_stay() -> None:
    doc, _ = one(make(), winston(message="pk_live_51HxYzAbCdEf"))
    assert doc["message"] == "pk_live_51HxYzAbCdEf"


@pytest.mark.parametrize("text", ["Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOjF9.c2ln",
                                  "header bearer abc-DEF_123.x~y+z/==", "BEARER token123"])
def test_bearer_tokens_are_masked_and_the_scheme_kept(text: str) -> None:
    doc, _ = one(make(), winston(message=text))
    assert doc["message"].endswith(M) and doc["message"].lower().count("bearer") == 1


def test_emails_are_kept_unless_turned_on() -> None:
    line = winston(message="Authentication failed", email="joe@example.com")
    assert one(make(), line)[0]["email"] == "joe@example.com"
    doc, rec = one(make({"redact": {"patterns": {"emails": True}}}), line)
    assert doc["email"] == M and rec["email"] == M


@pytest.mark.parametrize("key", ["ops@example.com", "paymentmethodid@example.com"])
def test_a_field_named_by_an_email_is_masked_and_sensitive_fields_beside_it_too(key: str) -> None:
    line = winston(**{key: "x", "paymentMethodId": "pm_abc123"})
    doc, rec = one(make({"redact": {"patterns": {"emails": True}}}), line)
    assert not everywhere(doc, rec, "pm_abc123") and not everywhere(doc, rec, "@example.com")


def test_custom_patterns_mask_their_matches() -> None:
    p = make({"redact": {"custom": [{"name": "ssn", "regex": r"\b\d{3}-\d{2}-\d{4}\b"}]}})
    doc, _ = one(p, winston(message="ssn 123-45-6789 on file"))
    assert doc["message"] == f"ssn {M} on file"
    assert p.counters["redacted:ssn"] == 1


def test_secrets_hidden_behind_json_escapes_are_found() -> None:
    escaped = orjson.dumps({"m": "x"}).replace(b'"x"', b'"sk\\u005flive_abc123 and 4242\\u00204242 4242 4242"')
    doc, rec = one(make(), escaped)
    assert doc["m"] == f"{M} and {M}" and rec["m"] == doc["m"]


def test_a_stripe_key_containing_digit_runs_is_masked_whole() -> None:
    doc, _ = one(make(), winston(message="sk_live_0004242424242424242xyz"))
    assert doc["message"] == M


def test_text_lines_are_redacted_like_json_strings() -> None:
    doc, rec = one(make(format="text"), f"charge {CARD} with {KEY}".encode())
    assert doc["message"] == f"charge {M} with {M}" == rec["message"]


def test_invalid_json_lines_are_redacted_in_their_message() -> None:
    doc, _ = one(make(), f'{{"message": "cut off {CARD}'.encode())
    assert "invalid_json" in doc["tags"] and CARD not in doc["message"]


def test_a_custom_mask_is_used_everywhere() -> None:
    doc, _ = one(make({"redact": {"mask": "***"}}), winston(message=CARD, token="t"))
    assert doc["message"] == "***" and doc["token"] == "***"


def test_a_mask_that_json_would_escape_is_a_config_error() -> None:
    with pytest.raises(OptionError, match="redact.mask"):
        make({"redact": {"mask": 'a"b'}})


def test_redaction_can_be_turned_off() -> None:
    doc, _ = one(make({"redact": {"enabled": False}}), winston(message=CARD, paymentMethodId="pm_1"))
    assert doc["message"] == CARD and doc["paymentMethodId"] == "pm_1"


# ---------------------------------------------------------------- counters and consumers


def test_counters_say_what_was_redacted() -> None:
    p = make({"redact": {"patterns": {"emails": True}}})
    run(p, [winston(message=f"{CARD} {CARD}", paymentMethodId="pm"), winston(message=KEY),
            winston(message="Bearer abc", email="a@b.io"), winston(message="clean")])
    assert p.counters == {"redacted:card_number": 2, "redacted:field": 1, "redacted:stripe_key": 1,
                          "redacted:bearer_token": 1, "redacted:email": 1, "records_redacted": 3}


def test_clean_records_keep_their_original_bytes() -> None:
    line = winston(message="HTTP request", statusCode=200)
    assert run(make(), [line]).docs[0].startswith(line[:-1] + b',"@timestamp"')


def test_redact_record_gives_alerts_a_redacted_copy() -> None:
    r = Redactor(RedactConfig())
    original = {"message": f"card {CARD}", "user": {"password": "hunter2"}}
    copy = r.redact_record(original)
    assert copy == {"message": f"card {M}", "user": {"password": M}}
    assert original["user"]["password"] == "hunter2"


def test_luhn() -> None:
    assert luhn(CARD) and luhn("378282246310005") and not luhn("4242424242424241")


@pytest.mark.parametrize("position", [0, 1, 2])
def test_secrets_in_multiline_events_are_found_wherever_they_sit_in_the_batch(position: int) -> None:
    event = b'{\n  "level": "warn",\n  "note": "key ' + KEY.encode() + b'"\n}'
    batch = [winston(message="a"), winston(message="b")]
    batch.insert(position, event)
    ev = run(make(), batch)
    assert all(KEY.encode() not in d for d in ev.docs) and ev.records[position]["note"] == f"key {M}"
