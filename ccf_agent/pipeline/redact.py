"""Redaction: secrets never leave the host, and the common record pays almost nothing.

What is redacted (`processors.redact`):
- fields by name, at any depth, case-insensitively: masked (value replaced by the mask) or
  dropped (removed);
- patterns in free text (every string value and key, and the whole of a text line):
  card numbers (13-19 digits, plain or grouped by single spaces or dashes, first digit 2-6,
  passing the Luhn check), Stripe secret and restricted keys and webhook secrets
  (`sk_live_`, `sk_test_`, `rk_live_`, `rk_test_`, `whsec_`), bearer tokens
  (`Bearer <token>`, any case), credentials (`Basic <base64 of user:password>`, and
  `name=value` in query strings, form bodies and the like when the name is a sensitive field
  or ends in token, secret, password, passwd, api_key, signature...; not `PWD=`, the working
  directory sudo logs), e-mail addresses (off by default), and custom regexes. JSON numbers
  are not free text: a 19-digit epoch-nanosecond field is not a card.
- JSON written as text: a string value holding JSON (`JSON.stringify(req.body)`), or what
  cannot be parsed (a JSON line that is not an object, not JSON, or nested too deep to take
  apart), has the values written after its sensitive keys masked (`"password":"..."`, also
  escaped once); the text of a line that cannot be parsed has its patterns masked as JSON would
  read them (through escapes), and when cut at `max_line_bytes`, a trailing digit run that
  could begin a card.

Cost. Per batch, one `bytes.translate` folds the joined raw lines so that a `find` and one
regex with a literal first byte tell which lines a pattern *could* be in: digits and dashes
become '0' and whitespace vanishes (a card is then 13 zeros in a row), and the first letters
of the markers become a sentinel byte (sk_live_ -> s\\x01_live_, Bearer -> \\x01earer). Raw
JSON holds string contents verbatim except for escapes, and only a \\uXXXX escape can hide a
marker, so the backslash is a sentinel too. A `name=value` credential is looked for at each
'=' of the batch (rare in JSON logs): the name before it decides. Only lines that hit are
decoded and checked exactly; only records that change are re-serialised. Top-level field
names are decided once per record shape (its tuple of keys, cached by the pipeline); a masked
top-level value is spliced into the raw bytes when that is provably exact (the key appears
once, followed by the value as orjson encodes it), else the record is re-serialised. A line
with a '{' after its first byte may hold a nested object: its record is walked for names. The
bytes that leave are what was judged: a walked line that writes more members than its record
holds (a key written twice, orjson keeping the last copy) is written again from the record.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from ccf_agent.pipeline.native import fast as _fast  # the prefilter in C, or None
from ccf_agent.pipeline.rawjson import members

if TYPE_CHECKING:
    from ccf_agent.pipeline.native import Scan

DEFAULT_FIELDS: tuple[str, ...] = (
    # The seed app's own (its Sentry hook strips these two), then credentials by their usual names.
    "paymentMethodId", "stripeKeys", "stripeKey", "stripeSecretKey",
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key",
    "password", "passwd", "secret", "clientSecret", "client_secret",
    "token", "accessToken", "access_token", "refreshToken", "refresh_token", "idToken", "id_token",
    "apiKey", "api_key", "cardNumber", "card_number", "cvc", "cvv",
    # Stripe's own names for a payment method (an id that charges the customer's card).
    "paymentMethod", "payment_method", "payment_method_id",
)

PATTERN_KINDS = ("card_numbers", "stripe_keys", "bearer_tokens", "credentials", "emails")


@dataclass(frozen=True)
class RedactConfig:
    enabled: bool = True
    mask: str = "[REDACTED]"
    fields: tuple[str, ...] = DEFAULT_FIELDS  # masked
    drop_fields: tuple[str, ...] = ()  # removed
    card_numbers: bool = True
    stripe_keys: bool = True
    bearer_tokens: bool = True
    credentials: bool = True
    emails: bool = False
    custom: tuple[tuple[str, str], ...] = ()  # (name, regex) for free text


# -------------------------------------------------------------- exact patterns (on decoded text)

# Each starts with a literal or a small character class, so the regex engine skips ahead fast
# (a leading \b, lookbehind or case-insensitive alternation makes it try every position). The
# leftmost match of a digit run starts at the run's first digit, so no lookbehind is needed.
_CARD_RUN = re.compile(r"[0-9](?:[ -]?[0-9]){12,}")
_SEPARATOR = re.compile(r"[ -]")
_SECRET_KEY = re.compile(r"k_(?:live|test)_[0-9A-Za-z]+")  # preceded by s or r: sk_live_, rk_test_
_WEBHOOK_SECRET = re.compile(r"whsec_[0-9A-Za-z+/=]+")
_BEARER = re.compile(r"([Bb][Ee][Aa][Rr][Ee][Rr]\s+)[A-Za-z0-9\-._~+/]+=*")  # after a non-word char
_BASIC = re.compile(r"[Bb][Aa][Ss][Ii][Cc]\s+([A-Za-z0-9+/]+=*)")  # after a non-word char; "user:password"
_NAME_VALUE = re.compile(r"([\w.\-]+)=([^&\s\"'#<>\\]+)")
# A name=value whose name ends so holds a credential (also: a sensitive field's name, and `key`).
CREDENTIAL_SUFFIXES = ("token", "secret", "password", "passwd", "apikey", "api_key", "api-key",
                       "access_key", "secret_key", "private_key", "signature")
_EMAIL_DOMAIN = re.compile(r"@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9._%+\-]+$")
# A cut card: the digit groups a truncated text ends with (the window holds any 18 digits grouped).
_TRAILING_DIGITS = re.compile(r"[0-9](?:[ -]?[0-9])*[ -]?\Z")
_CUT_WINDOW = 48
_CUT_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*(\\(?:u[0-9A-Fa-f]{0,3})?)\Z")  # an escape the cut left unfinished
_BIN_DIGITS = 6  # the first six digits of a card may be shown (PCI DSS): a shorter run is kept
# A JSON key as written, or escaped once (inside a JSON string holding JSON), and its colon.
_JSON_KEY = re.compile(r'(\\?)"((?:[^"\\\n]|\\u[0-9A-Fa-f]{4}){1,128})\1"\s*:\s*')
_UNICODE_ESCAPE = re.compile(r"\\u([0-9A-Fa-f]{4})")
_DELIMITER_CHARS = " \t\r\n,[]{}"
_DELIMITERS = re.compile(r"[\s,\[\]{}]*")  # what may stand between a value and the next key
_ESCAPE = re.compile(r"\\(?:u([0-9A-Fa-f]{4})|.)", re.DOTALL)  # left to right: an escaped backslash is no escape
_READ = {"\\t": "\t", "\\n": "\n", "\\r": "\r", "\\f": "\x0c", "\\/": "/"}  # (see _spelled_out)


def luhn(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        n = ord(c) - 48
        if i & 1:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def card_spans(text: str) -> list[tuple[int, int]]:
    """Spans of card numbers in text: within each run of digit groups, the longest run of
    whole groups (13-19 digits, first digit 2-6) passing the Luhn check, left to right."""
    spans: list[tuple[int, int]] = []
    for m in _CARD_RUN.finditer(text):
        run, base = m.group(), m.start()
        groups: list[tuple[int, int]] = []  # (start, end) of each digit group in run
        start = 0
        for sep in _SEPARATOR.finditer(run):
            groups.append((start, sep.start()))
            start = sep.end()
        groups.append((start, len(run)))
        i = 0
        while i < len(groups):
            found = -1
            ndigits = 0
            for j in range(i, len(groups)):
                ndigits += groups[j][1] - groups[j][0]
                if ndigits > 19:
                    break
                if ndigits >= 13 and run[groups[i][0]] in "23456":
                    digits = "".join(run[a:b] for a, b in groups[i:j + 1])
                    if luhn(digits):
                        found = j
            if found >= 0:
                spans.append((base + groups[i][0], base + groups[found][1]))
                i = found + 1
            else:
                i += 1
    return spans


# -------------------------------------------------------------- the prefilter (on raw bytes)

_SENTINEL, _AT = 1, 3
_FOLD_BASE = bytearray(range(256))
for _c in b"0123456789-":
    _FOLD_BASE[_c] = ord("0")
_FOLD_BASE[ord("\\")] = _SENTINEL  # a \uXXXX escape could spell anything once decoded
_ZEROS = b"0" * 13
_DROP = b" \t\r"  # whitespace vanishes: grouped digits become one run


def _fold_table(stripe: bool, bearer: bool, emails: bool, credentials: bool = False) -> bytes:
    table = bytearray(_FOLD_BASE)
    if stripe:
        table[ord("k")] = table[ord("w")] = _SENTINEL
    if bearer or credentials:
        table[ord("b")] = table[ord("B")] = _SENTINEL
    if bearer:
        for c in b"EAR":
            table[c] = c + 32
    if credentials:  # Basic, any case
        for c in b"ASIC":
            table[c] = c + 32
    if emails:
        table[ord("@")] = _AT
    return bytes(table)


def _marker_regex(stripe: bool, bearer: bool, credentials: bool = False) -> re.Pattern[bytes]:
    # One literal first byte keeps the regex engine on its fast scan (an alternation of
    # different first bytes is several times slower). After the fold, a \uXXXX escape reads
    # \x01u and four of 0, a-f, A-F (or \x01 for a folded b/B).
    after = ([rb"_live_", rb"_test_", rb"hsec_"] if stripe else []) + ([rb"earer"] if bearer else []) + (
        [rb"asic"] if credentials else [])
    return re.compile(rb"\x01(?:" + b"|".join([*after, rb"u[0a-fA-F\x01]{4}"]) + rb")")


# A JSON string as written (escapes kept, so the prefilter folds them as it would in the line).
_JSON_STRING = re.compile(rb'"(?:[^"\\\n]|\\.)*"')

class Redactor:
    """Applies one RedactConfig; counts what it did in `counters` (shared with the pipeline)."""

    def __init__(self, cfg: RedactConfig, counters: dict[str, int] | None = None) -> None:
        self.cfg = cfg
        self.counters = counters if counters is not None else {}
        if not cfg.mask or any(c in cfg.mask for c in '"\\') or any(ord(c) < 32 for c in cfg.mask):
            raise ValueError("the mask is written into raw JSON: no quotes, backslashes or control characters")
        self.mask = cfg.mask
        self._mask_json = orjson.dumps(cfg.mask)
        self._heads: dict[str, bytes] = {}  # key -> its JSON encoding and colon, for splicing
        self.mask_names = frozenset(n.lower() for n in cfg.fields)
        self.drop_names = frozenset(n.lower() for n in cfg.drop_fields)
        self.names = self.mask_names | self.drop_names
        self._custom = tuple((name, re.compile(rx)) for name, rx in cfg.custom)
        self._fold = _fold_table(cfg.stripe_keys, cfg.bearer_tokens, cfg.emails, cfg.credentials)
        self._markers = _marker_regex(cfg.stripe_keys, cfg.bearer_tokens, cfg.credentials)
        self._cards = cfg.card_numbers
        self._creds = cfg.credentials
        # name=value: the names that make it a credential.
        self._credential_names = self.names | {"key"}
        # The prefilter's view of them: the bytes before an '=', lower-cased, end with one of these;
        # looked up by the three bytes before the '=' (in any case), so most '=' cost a dict get.
        ends: dict[bytes, set[bytes]] = {}
        for tail in {n.encode() for n in (*CREDENTIAL_SUFFIXES, *self._credential_names)}:
            for last3 in _cases(tail[-3:]):
                ends.setdefault(last3, set()).add(tail)
        self._credential_ends = {last3: tuple(tails) for last3, tails in ends.items()}
        # Needles in the folded text besides the markers: 13 digits (a card), an '@' (e-mails).
        self._needles = ((_ZEROS,) if cfg.card_numbers else ()) + ((b"\x03",) if cfg.emails else ())
        self._text_patterns = bool(cfg.card_numbers or cfg.stripe_keys or cfg.bearer_tokens or cfg.credentials
                                   or cfg.emails or cfg.custom)
        # The same markers for the C prefilter: the bytes after the sentinel (0xFF: a folded hex digit).
        self._suffixes = ((b"_live_", b"_test_", b"hsec_") if cfg.stripe_keys else ()) + (
            (b"earer",) if cfg.bearer_tokens else ()) + ((b"asic",) if cfg.credentials else ()) + (b"u\xff\xff\xff\xff",)
        self._native = _fast is not None and not cfg.custom
        self.masked_seen = False  # set by walk: a sensitive field already held the mask
        self._keys_seen = 0  # counted by walk: the keys of every object it went through
        # No built-in pattern fits in fewer characters ("a@b.io", "Bearer x", "sk_live_x").
        self._min_len = 1 if cfg.custom else 6

    def _count(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    # ---------------------------------------------------------------- free text

    def _fold_args(self, json: bool) -> tuple[Any, ...]:
        return (self._fold, _DROP, len(_ZEROS) if self._cards else 0, _AT if self.cfg.emails else -1,
                self._suffixes, True, json)

    def json_fold(self) -> tuple[Any, ...] | None:
        """What `scan(data, json=True)` runs the C prefilter with, for a thread that runs it ahead
        (_fast.ReadAhead). None: scan does not run the C prefilter (no pattern can match; no
        extension; custom patterns, which only the Python prefilter knows)."""
        return self._fold_args(True) if self._text_patterns and self._native else None

    @property
    def scans_in_python(self) -> bool:
        """scan's verdict needs the Python prefilter (custom patterns, or no extension)."""
        return self._text_patterns and not self._native

    def could_hold_secret(self, line: bytes) -> bool:
        """The prefilter for one line: False means no pattern can match any decoded string of it."""
        return bool(self.scan([line]))

    def scan(self, lines: list[bytes] | bytes, json: bool = False, scanned: Scan | None = None) -> set[int]:
        """The prefilter for a batch: the indices of lines where a pattern could match. One fold
        and a few scans over the joined batch cost far less than the same calls per line; hits
        are rare, so mapping them back to lines is cheap.

        `json`: the lines are JSON objects, so a digit run outside every string is a number, not a
        card (the exact check skips those too), and need not make its line a hit: a 19-digit
        epoch field then costs nothing. Only the C prefilter uses this; a line that turns out not
        to be a JSON object must be scanned again without it (see Pipeline._odd).

        `lines` may also be a batch's data: its lines, each ended by a newline. `scanned`: a
        read-ahead scan of that data (`_fast.ReadAhead`, which ran the C prefilter already).
        Credentials (`name=value`) are looked for here in Python, whichever prefilter ran."""
        if not lines or not self._text_patterns:
            return set()
        if scanned is not None and _fast is not None:
            hits = set(_fast.scan_hits(scanned))
        elif self._native:
            hits = set(_fast.prefilter(lines, *self._fold_args(json)))
        else:
            hits = self._scan_python(lines)
            if json and hits and not self._custom:
                hits = self._in_strings(lines, hits)
        return hits | self._credential_lines(lines) if self._creds else hits

    def _in_strings(self, lines: list[bytes] | bytes, hits: set[int]) -> set[int]:
        """The hit lines whose JSON strings still hit on their own: the C prefilter's `json` rule
        (a digit run outside every string is a number, never a card), so both loops take the same
        lines apart and splice the same bytes."""
        split = lines[:-1].split(b"\n") if isinstance(lines, bytes) else lines
        return {i for i in hits if self._scan_python([b"\n".join(_JSON_STRING.findall(split[i]))])}

    def _scan_python(self, lines: list[bytes] | bytes) -> set[int]:
        if isinstance(lines, bytes):
            lines = lines[:-1].split(b"\n")
        joined = b"\n".join(lines)
        folded = joined.translate(self._fold, _DROP)
        positions: list[int] = []
        for needle in self._needles:
            p = folded.find(needle)
            while p >= 0:
                positions.append(p)
                p = folded.find(b"\n", p)  # one hit per line is enough
                if p < 0:
                    break
                p = folded.find(needle, p)
        search = self._markers.search
        m = search(folded)
        while m is not None:
            positions.append(m.start())
            p = folded.find(b"\n", m.start())
            m = search(folded, p) if p >= 0 else None
        found: list[int] = []
        if self._custom:
            text = joined.decode("utf-8", "replace")
            found = [m.start() for _, rx in self._custom for m in rx.finditer(text)]
        if not positions and not found:
            return set()  # the common case: no line needs a closer look
        if len(lines) == 1:
            return {0}  # (its own newlines, if it is a multiline event, do not matter)
        if joined.count(b"\n") != len(lines) - 1:
            # Multiline events hold newlines of their own: positions would not map back to lines.
            return {i for i, line in enumerate(lines) if self._scan_python([line])}
        hits = self._lines_of(folded, positions, b"\n")
        if found:
            hits |= self._lines_of(text, found, "\n")
        return hits

    def _credential_lines(self, lines: list[bytes] | bytes) -> set[int]:
        """The lines with an '=' after a credential's name (`?access_token=`, `password=`): the
        bytes before each '=' decide, so a batch with no '=' costs one search."""
        data = lines if isinstance(lines, bytes) else b"\n".join(lines)
        p = data.find(b"=")
        if p < 0:
            return set()
        ends = self._credential_ends
        positions: list[int] = []
        while p >= 0:
            tails = ends.get(data[max(0, p - 3):p])
            if tails is not None and data[max(0, p - 32):p].lower().endswith(tails):
                positions.append(p)
                p = data.find(b"\n", p)  # one hit per line is enough
                if p < 0:
                    break
            p = data.find(b"=", p + 1)
        if not positions:
            return set()
        if isinstance(lines, list) and len(lines) > 1 and data.count(b"\n") != len(lines) - 1:
            return {i for i, line in enumerate(lines) if self._credential_lines([line])}  # multiline events
        return self._lines_of(data, positions, b"\n")

    @staticmethod
    def _lines_of(buf: Any, positions: list[int], newline: Any) -> set[int]:
        out: set[int] = set()
        line = last = 0
        for p in sorted(positions):
            line += buf.count(newline, last, p)
            last = p
            out.add(line)
        return out

    def scrub_json(self, text: str) -> str:
        """Compact JSON text with no backslash: patterns masked inside its strings (keys and
        values). Quotes are then never escaped, so a position is inside a string exactly when an
        odd number of quotes precede it; card-like digits outside strings are JSON numbers. The
        other patterns cannot match outside a string, nor across a quote."""
        return self.scrub(text, json_text=True)

    def scrub(self, text: str, json_text: bool = False) -> str:
        """Text with every pattern masked (the same object when nothing matched)."""
        if len(text) < self._min_len:
            return text
        # The batch prefilter's fold, on this string: which families could be in it at all.
        folded = text.encode("utf-8", "surrogatepass").translate(self._fold, _DROP)
        cards = self._cards and folded.find(_ZEROS) >= 0
        markers = self._markers.search(folded) is not None
        emails = self.cfg.emails and "@" in text
        assigned = self._creds and "=" in text
        if not (cards or markers or emails or assigned or self._custom):
            return text
        cfg, mask = self.cfg, self.mask
        out = text
        # Keys and tokens first: a card-like digit run inside a key is then already gone.
        if markers and cfg.stripe_keys:
            out = self._replace(out, [(m.start() - 1, m.end()) for m in _SECRET_KEY.finditer(out)
                                      if m.start() > 0 and out[m.start() - 1] in "sr"], "stripe_key")
            out = self._replace(out, [m.span() for m in _WEBHOOK_SECRET.finditer(out)], "stripe_key")
        if markers and cfg.bearer_tokens:
            out = self._replace(out, [(m.end(1), m.end()) for m in _BEARER.finditer(out)
                                      if m.start() == 0 or not (out[m.start() - 1].isalnum()
                                                                or out[m.start() - 1] == "_")], "bearer_token")
        if markers and cfg.credentials and folded.find(b"\x01asic") >= 0:
            out = self._replace(out, [m.span(1) for m in _BASIC.finditer(out) if _basic_credentials(out, m)],
                                "credential")
        if assigned:
            out = self._replace(out, [m.span(2) for m in _NAME_VALUE.finditer(out)
                                      if self._credential_name(m.group(1))], "credential")
        if emails:
            spans = []
            for m in _EMAIL_DOMAIN.finditer(out):
                local = _EMAIL_LOCAL.search(out, max(0, m.start() - 64), m.start())
                if local is not None:
                    spans.append((local.start(), m.end()))
            out = self._replace(out, spans, "email")
        for name, rx in self._custom:
            out, n = rx.subn(mask, out)
            if n:
                self._count(f"redacted:{name}", n)
        if cards:
            spans = card_spans(out)
            if json_text:
                spans = [(a, b) for a, b in spans if out.count('"', 0, a) % 2 == 1]
            out = self._replace(out, spans, "card_number")
        return text if out == text else out

    def _scrub_string(self, text: str, json_strings: bool) -> str:
        """scrub, and for a string holding JSON, scrub as that JSON reads its own escapes
        ("Bearer\\u0009x" in a stringified header), kept only when that masks something."""
        out = self.scrub(text)
        if out is text and json_strings and "\\" in text and '"' in text:
            read = _spelled_out(text)
            if read is not text:
                masked = self.scrub(read)
                if masked is not read:
                    return masked
        return out

    def _credential_name(self, name: str) -> bool:
        low = name.lower()
        return low in self._credential_names or low.endswith(CREDENTIAL_SUFFIXES)

    def cut_card(self, text: str, json: bool = False) -> str:
        """A text cut at max_line_bytes may end inside a card, which the Luhn check then misses:
        trailing digit groups that could begin one (from a group starting with 2-6, more digits
        than the six a card's BIN shows, fewer than a whole card) are masked. `json`: the text
        is JSON cut short, whose digits may be escapes (read first; one cut in half is dropped)."""
        if not self._cards:
            return text
        if json and "\\" in text:
            text = _spelled_out(text)
            partial = _CUT_ESCAPE.search(text)
            if partial is not None:
                text = text[:partial.start(1)]
        tail = text[-_CUT_WINDOW:]
        m = _TRAILING_DIGITS.search(tail)
        if m is None:
            return text
        run, base = m.group(), len(text) - len(tail) + m.start()
        for start in (0, *(sep.end() for sep in _SEPARATOR.finditer(run))):
            rest = run[start:]
            digits = len(rest) - rest.count(" ") - rest.count("-")
            if _BIN_DIGITS < digits < 19 and rest[:1] in ("2", "3", "4", "5", "6"):
                self._count("redacted:card_number")
                return text[:base + start] + self.mask
        return text

    def json_names(self, text: str) -> str:
        """JSON text that is not a record (not JSON, not an object, nested too deep): the value
        written after each sensitive key masked in the text itself, also where the JSON is
        escaped once (a JSON string holding JSON). A value that does not end runs to the end."""
        if not self.names or '"' not in text:
            return text
        parts: list[str] = []
        last = 0
        for m in _JSON_KEY.finditer(text):
            if m.start() < last:
                continue  # inside a value masked already
            key = _UNICODE_ESCAPE.sub(lambda u: chr(int(u.group(1), 16)), m.group(2))
            if key.lower() not in self.names:
                continue
            start, escaped = m.end(), len(m.group(1))
            end = _value_end(text, start, escaped)
            following = _JSON_KEY.search(text, end)
            upto = following.start() if following is not None else len(text)
            if (end == start or _DELIMITERS.fullmatch(text, end, upto) is None
                    or (following is not None and _after(text, upto, end) not in (",", "{"))):
                # A broken line: no value, more than delimiters before the next key (junk, a
                # string after a stray bracket), or a key with no comma before it. All of it is
                # the value, but its delimiters, up to the next key that follows a comma: a key
                # after a stray bracket or a missing comma may be the value's own
                # ({"password":}{"live":"..."}, {"password":{}"live":"..."}).
                upto = _member_after(text, end)
                end = start + len(text[start:upto].rstrip(_DELIMITER_CHARS))
                if end == start:
                    continue
            quote = m.group(1) + '"'
            parts += [text[last:start], quote, self.mask, quote]
            last = end
            self._count("redacted:field")
        if not parts:
            return text
        parts.append(text[last:])
        return "".join(parts)

    def _replace(self, text: str, spans: list[tuple[int, int]], kind: str) -> str:
        """Mask the given (sorted, non-overlapping) spans."""
        if not spans:
            return text
        self._count(f"redacted:{kind}", len(spans))
        parts: list[str] = []
        last = 0
        for a, b in spans:
            parts += [text[last:a], self.mask]
            last = b
        parts.append(text[last:])
        return "".join(parts)

    # ---------------------------------------------------------------- records

    def walk(self, obj: Any, patterns: bool = True, json_strings: bool = True) -> bool:
        """Redact a parsed record in place: names at any depth and, with `patterns`, every string
        value and key. True if anything changed. `json_strings`: a string value may hold JSON
        (`{"body":"{\\"password\\":\\"x\\"}"}`, from JSON.stringify): its sensitive keys' values
        are masked in it (see json_names); False when the raw line holds no backslash, so no string
        of it can hold a quote."""
        patterns = patterns and self._text_patterns
        changed = False
        if type(obj) is dict:
            names, drop = self.names, self.drop_names
            self._keys_seen += len(obj)
            for key in list(obj):
                value = obj[key]
                low = key.lower()
                if low in names:
                    if low in drop:
                        del obj[key]
                    elif value == self.mask:
                        self.masked_seen = True
                        continue
                    else:
                        obj[key] = self.mask
                    self._count("redacted:field")
                    changed = True
                    continue
                if type(value) is str:
                    new = self.json_names(value) if json_strings and '"' in value else value
                    if patterns:
                        new = self._scrub_string(new, json_strings)
                    if new is not value:
                        obj[key] = new
                        changed = True
                elif type(value) in (dict, list):
                    changed |= self.walk(value, patterns, json_strings)
                if patterns:
                    new_key = self.scrub(key)
                    if new_key is not key:
                        obj[self._free_key(obj, new_key)] = obj.pop(key)
                        changed = True
        elif type(obj) is list:
            for i, value in enumerate(obj):
                if type(value) is str:
                    new = self.json_names(value) if json_strings and '"' in value else value
                    if patterns:
                        new = self._scrub_string(new, json_strings)
                    if new is not value:
                        obj[i] = new
                        changed = True
                elif type(value) in (dict, list):
                    changed |= self.walk(value, patterns, json_strings)
        return changed

    @staticmethod
    def _free_key(obj: Mapping[str, Any], key: str) -> str:
        candidate, n = key, 1
        while candidate in obj:
            n += 1
            candidate = f"{key}_{n}"
        return candidate

    def sensitive(self, keys: tuple[str, ...]) -> tuple[str, ...]:
        """The keys, of those given, that name a field to mask or drop (case-insensitively).
        The pipeline caches this per record shape (its key tuple), so a record pays a lookup."""
        names = self.names
        return tuple(k for k in keys if k.lower() in names)

    def json_line(self, line: bytes, rec: dict[str, Any], hit: bool,
                  sensitive: tuple[str, ...] | None = None) -> bytes | None:
        """Redact a Winston JSON line and its parsed record (mutated in place), given what `scan`
        said of it and the record's top-level `sensitive` keys (computed when None). Returns the
        line to ship instead (a compact JSON object), or None when nothing changed."""
        nested = line.rfind(b"{") > 0  # a nested object (or a brace in a string)
        changed = False
        if hit:
            text = None
            if line.find(b"\\") < 0 and not self._custom and not nested:
                # A flat object with no backslash holds every string verbatim in the raw text, so
                # the patterns can be masked in the text itself and the record re-read from it.
                text = line.decode("utf-8", "replace")
                new = self.scrub_json(text)
                if new is not text:
                    fresh = orjson.loads(new)
                    if len(fresh) != len(rec):
                        text = None  # a masked key now collides with another: walk instead
                    else:
                        line = new.encode("utf-8")
                        if sensitive is not None and fresh.keys() != rec.keys():
                            sensitive = None  # a key was masked: which are sensitive is asked again
                        rec.clear()
                        rec.update(fresh)
                        changed = True
            if text is None:
                # Escapes, nested objects or a custom regex (which might span quotes): redact
                # the parsed strings themselves.
                return self._walked(rec, line, patterns=True)
        out = self._names(line, rec, nested, sensitive)
        if out is not None:
            return out
        if changed:
            self._count("records_redacted")
            return line
        return None

    def _names(self, line: bytes, rec: dict[str, Any], nested: bool,
               sensitive: tuple[str, ...] | None) -> bytes | None:
        if not self.names:
            return None
        if nested:  # nested objects: their keys need a walk
            return self._walked(rec, line, patterns=False)
        if sensitive is None:
            sensitive = self.sensitive(tuple(rec))
        if not sensitive:
            return None
        return self.top_level_names(line, rec, sensitive)

    def _walked(self, rec: dict[str, Any], line: bytes, patterns: bool) -> bytes | None:
        """walk(rec): the record written again if it changed, else None (ship the line as it is),
        unless the line holds more than the record. A key written twice parses to its last copy
        (`{"a":{"card":"4111..."},"a":{}}`), and walk judged only that one: when the line writes
        more members than walk went through keys, or a sensitive field already held the mask
        (`{"cvv":"123","cvv":"[REDACTED]"}`), the record is written again instead."""
        self.masked_seen = False
        self._keys_seen = 0
        if self.walk(rec, patterns, json_strings=line.find(b"\\") >= 0):
            self._count("records_redacted")
            return orjson.dumps(rec)
        return orjson.dumps(rec) if self.masked_seen or members(line) != self._keys_seen else None

    def top_level_names(self, line: bytes, rec: dict[str, Any], keys: tuple[str, ...]) -> bytes | None:
        """A flat record (no '{' past the first byte) whose top-level `keys` are sensitive: mask or
        drop them, splicing the raw bytes when exact, else re-serialising. None if unchanged."""
        out: bytes | None = line
        changed = 0
        for key in keys:
            value = rec[key]
            drop = key.lower() in self.drop_names
            if not drop and value == self.mask:
                # Already the mask, unless the key is written twice and orjson kept the last: then
                # the line still holds the other copy and is written again from the record.
                if line.count(self._head(key)) != 1:
                    out = None
                continue
            if out is not None:
                out = self._splice(out, key, value, drop)
            if drop:
                del rec[key]
            else:
                rec[key] = self.mask
            changed += 1
        if not changed:
            return None if out is not None else orjson.dumps(rec)
        counters = self.counters
        counters["redacted:field"] = counters.get("redacted:field", 0) + changed
        counters["records_redacted"] = counters.get("records_redacted", 0) + 1
        return out if out is not None else orjson.dumps(rec)

    def _head(self, key: str) -> bytes:
        """'"key":' as orjson writes it."""
        head = self._heads.get(key)
        if head is None:
            head = self._heads[key] = orjson.dumps(key) + b":"
        return head

    def _splice(self, line: bytes, key: str, value: Any, drop: bool) -> bytes | None:
        # In raw JSON with no nested object, '"key":' can only occur as a top-level key (a quote
        # inside a string is escaped): when it occurs once and is followed by the value as orjson
        # encodes it, that is the field.
        if type(value) not in (str, int, float, bool) and value is not None:
            return None
        head = self._head(key)
        try:
            needle = head + orjson.dumps(value)
        except orjson.JSONEncodeError:
            return None
        i = line.find(needle)
        if i < 0 or line.count(head) != 1:
            return None  # absent as encoded, or the key appears twice (orjson kept only the last)
        j = i + len(needle)
        if line[j:j + 1] not in (b",", b"}"):
            return None  # the value continues (e.g. 1 vs 1.5): not this field
        if not drop:
            return line[:i] + head + self._mask_json + line[j:]
        if line[j:j + 1] == b",":
            return line[:i] + line[j + 1:]
        if line[i - 1:i] == b",":
            return line[:i - 1] + line[j:]
        return line[:i] + line[j:]

    def text_record(self, rec: dict[str, Any], hit: bool, names_possible: bool = True, json: bool = False) -> bool:
        """A record built from a non-JSON line (text format, invalid JSON): redact in place.
        `hit` is what `scan` said of the line; `names_possible` False when none of the keys the
        parser can produce is a sensitive name (then only a hit needs a walk). `json`: the line
        was meant to be JSON, so its message may write sensitive keys (see json_names)."""
        message = rec.get("message")
        if json and type(message) is str:
            # Patterns are matched on the text as JSON would read it: "4\u0031\u0031\u0031..." is a card.
            masked = self.json_names(_spelled_out(message) if hit and "\\" in message else message)
            if masked != message:
                rec["message"] = masked
        changed = self.walk(rec, patterns=hit, json_strings=False) if hit or (names_possible and self.names) else False
        changed = changed or rec.get("message") is not message
        if changed:
            self._count("records_redacted")
        return changed

    def redact_dict(self, rec: dict[str, Any]) -> bool:
        """A parsed record whose raw line is not shipped as is: walk all of it, in place."""
        if self.walk(rec):
            self._count("records_redacted")
            return True
        return False

    def redact_record(self, rec: Mapping[str, Any]) -> dict[str, Any]:
        """A redacted deep copy (for alert notifications and anything else outside the pipeline)."""
        out = copy.deepcopy(dict(rec))
        self.walk(out)
        return out


def _cases(word: bytes) -> set[bytes]:
    """Every way to write `word` (lower-case ASCII) in upper and lower case."""
    out = {b""}
    for c in word:
        out = {w + bytes([x]) for w in out for x in {c, bytes([c]).upper()[0]}}
    return out


def _spelled_out(text: str) -> str:
    """JSON text with the escapes a pattern must see through read: \\uXXXX of printable ASCII
    and of whitespace, and \\t \\n \\r \\f \\/ ("Bearer\\u0009x" is a bearer token). Quotes and
    backslashes stay escaped."""
    def one(m: re.Match[str]) -> str:
        if m.group(1) is None:
            return _READ.get(m.group(), m.group())
        c = chr(int(m.group(1), 16))
        return c if (" " <= c <= "~" and c not in '"\\') or c in "\t\n\r\x0b\x0c" else m.group()
    return _ESCAPE.sub(one, text)


def _basic_credentials(text: str, m: re.Match[str]) -> bool:
    """A `Basic <token>` match is an HTTP Basic credential: a word of its own, and the token is
    base64 of `user:password` (so "Basic plan" or "Basic auth is off" stays)."""
    a = m.start()
    if a and (text[a - 1].isalnum() or text[a - 1] == "_"):
        return False
    token = m.group(1).rstrip("=")
    token = token[:len(token) - 1] if len(token) % 4 == 1 else token  # (a line cut inside the token)
    try:
        return b":" in base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False


def _after(text: str, k: int, lo: int) -> str:
    """The character that text[k] follows, blanks aside, looking no further back than text[lo]
    ("" when there is none)."""
    k -= 1
    while k >= lo and text[k] in " \t\r\n":
        k -= 1
    return text[k] if k >= lo else ""


def _member_after(text: str, i: int) -> int:
    """Where the first key at or after text[i] that follows a comma begins; the end of the text
    when none does."""
    for m in _JSON_KEY.finditer(text, i):
        if _after(text, m.start(), i) == ",":
            return m.start()
    return len(text)


def _value_end(text: str, i: int, escaped: int) -> int:
    """Where the JSON value starting at text[i] ends (json_names): a string after its closing
    quote, an object or array after its closing bracket, anything else (a scalar, or the junk of
    a broken line) at the next comma or closing bracket, through any string on the way; the end
    of the text when it does not end. `escaped`: 1 when the JSON is escaped once (quotes are \\")."""
    quote = "\\" * escaped + '"'
    if text.startswith(quote, i):
        return _string_end(text, i + len(quote), escaped)
    opens = text[i:i + 1] in ("{", "[")
    depth, k = 0, i
    while k < len(text):
        if text.startswith(quote, k):
            k = _string_end(text, k + len(quote), escaped)
            continue
        c = text[k]
        if c in "{[":
            depth += 1
        elif c in "}]" or (c == "," and depth == 0):
            if depth == 0:
                return k
            depth -= 1
            if depth == 0 and opens:
                return k + 1
        k += 1
    return len(text)


def _string_end(text: str, j: int, escaped: int) -> int:
    """Past the quote that closes the string whose contents start at text[j] (the end of the
    text when none does)."""
    while True:
        k = text.find('"', j)
        if k < 0:
            return len(text)
        run = 0  # the backslashes before this quote
        while k - 1 - run >= j and text[k - 1 - run] == "\\":
            run += 1
        # Unescaped, a quote after an even run closes the string; escaped once, \" closes it
        # and \\\" is a quote inside it.
        if (run % 4 == 1) if escaped else (run % 2 == 0):
            return k + 1
        j = k + 1
