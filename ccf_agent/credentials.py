"""Credentials in text that people and other programs see: one place that hides them.

A secret reaches a message in two ways: inside a URL (`user:password@`, a `?access_token=`) that
an error or a status line names, or quoted by a library's own error text. `safe_url` rewrites a
URL for display; `Scrubber` replaces every known secret, and any URL userinfo, in free text; and
`ScrubbingFormatter` applies the process-wide scrubber to every log line, tracebacks included,
so a message nobody thought about cannot print a configured secret either.
"""

from __future__ import annotations

import base64
import logging
import os
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit, urlunsplit

if TYPE_CHECKING:
    from ccf_agent.config import Config, OutputConfig

HIDDEN = "***"
MIN_SECRET = 3  # shorter values would blank out ordinary words

# Query parameters whose value is a credential (access_token, api_key, X-Amz-Signature, sig, ...).
_SECRET_PARAM = re.compile(r"token|key|secret|passw|pwd|auth|sig|credential|session|code", re.I)
# Header names whose value is a credential.
_SECRET_HEADER = re.compile(r"authorization|token|key|secret|passw|cookie|session|auth", re.I)
# scheme://userinfo@ anywhere in a text.
_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@?#'\"]*@")


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """(the URL without `user:password@`, user, password); user and password are unquoted."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None, None
    netloc = parts.netloc.rpartition("@")[2]
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return urlunsplit(parts._replace(netloc=netloc)), user, password


def safe_url(url: str) -> str:
    """The URL as it may be shown: userinfo and credential-like query values replaced by ***."""
    if "://" not in url:  # host:port, maybe user:password@host:port
        return f"{HIDDEN}@{url.rpartition('@')[2]}" if "@" in url else url
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<a URL that does not parse>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{HIDDEN}@{netloc.rpartition('@')[2]}"
    query = "&".join(_hide_param(p) for p in parts.query.split("&")) if parts.query else ""
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _hide_param(pair: str) -> str:
    name, eq, _ = pair.partition("=")
    return f"{name}={HIDDEN}" if eq and _SECRET_PARAM.search(name) else pair


def url_secrets(url: str) -> list[str]:
    """What in a URL is a credential: the password (as written and unquoted), secret query values."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    out: list[str] = []
    if "@" in parts.netloc:
        userinfo = parts.netloc.rpartition("@")[0]
        user, _, password = userinfo.partition(":")
        out += [userinfo, password, unquote(password)] if password else [userinfo]
    for pair in parts.query.split("&") if parts.query else ():
        name, eq, value = pair.partition("=")
        if eq and value and _SECRET_PARAM.search(name):
            out += [value, unquote(value)]
    return out


def header_secrets(headers: Iterable[tuple[str, str]]) -> list[str]:
    """Values of headers that carry credentials, and the credential after `Bearer `/`Basic `."""
    out: list[str] = []
    for name, value in headers:
        if _SECRET_HEADER.search(name):
            out.append(value)
            scheme, _, cred = value.partition(" ")
            if cred and scheme.isalpha():
                out.append(cred)
    return out


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def output_secrets(cfg: OutputConfig) -> list[str]:
    """Every credential of an output, as configured and as sent (Basic auth is base64 on the wire)."""
    out = [s for s in (cfg.password, cfg.api_key, cfg.bearer_token) if s]
    if cfg.username:
        out.append(basic_auth(cfg.username, cfg.password or "").split(" ", 1)[1])
    for h in cfg.hosts:
        out += url_secrets(h)
        _, user, password = split_userinfo(h) if "://" in h else (h, None, None)
        if user is not None:
            out.append(basic_auth(user, password or "").split(" ", 1)[1])
    headers: Any = getattr(cfg.options, "headers", None)
    if headers:
        out += header_secrets(headers.items())
    out += getattr(cfg.options, "secrets", ())  # a type's own credentials (kafka's sasl.password)
    return out + proxy_secrets(getattr(cfg.options, "proxy", None))


def notifier_secrets(url: str, headers: Iterable[tuple[str, str]]) -> list[str]:
    """A webhook URL is a credential as a whole (Slack, Discord and Teams put the token in its path)."""
    out = [url, *url_secrets(url), *header_secrets(headers)]
    try:
        path = urlsplit(url).path
    except ValueError:
        path = ""
    segments = [p for p in path.split("/") if p]
    if len(path.strip("/")) >= 16:
        out.append(path)
    # The token itself: the last segment (Slack, Discord), or any long one (Teams' GUIDs).
    out += [p for i, p in enumerate(segments) if len(p) >= 20 or (i == len(segments) - 1 and len(p) >= 8)]
    return out


def proxy_secrets(proxy: Any) -> list[str]:
    """A proxy setting's (proxies.Proxy) password, as written and as sent (Basic, base64)."""
    url = getattr(proxy, "url", None)
    return _url_credentials(url) if url else []


def environment_secrets(environ: Mapping[str, str]) -> list[str]:
    """Credentials in the proxy variables of an environment (HTTPS_PROXY=http://u:p@proxy:3128)."""
    return [s for name, value in environ.items() if name.lower().endswith("_proxy") and "@" in value
            for s in _url_credentials(value)]


def _url_credentials(url: str) -> list[str]:
    out = url_secrets(url)
    _, user, password = split_userinfo(url)
    if user is not None:
        out.append(basic_auth(user, password or "").split(" ", 1)[1])
    return out


def config_secrets(config: Config) -> list[str]:
    """Every credential of the config, and those of the proxy variables of the environment."""
    out = [s for o in config.outputs.values() for s in output_secrets(o)]
    if config.alerts is not None:
        for n in config.alerts.notifiers.values():
            out += notifier_secrets(n.url, n.headers.items()) + proxy_secrets(n.proxy)
    return out + environment_secrets(os.environ)


class Scrubber:
    """Replaces each of a set of secrets, and any URL userinfo, in a text."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self.secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str | None]) -> None:
        known = set(self.secrets)
        known.update(s for s in secrets if s and len(s) >= MIN_SECRET)
        # Longest first: a password inside a longer secret must not leave the rest of it behind.
        self.secrets = sorted(known, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for s in self.secrets:
            if s in text:
                text = text.replace(s, HIDDEN)
        return _USERINFO.sub(rf"\1{HIDDEN}@", text) if "@" in text else text


# The process-wide scrubber every log line goes through (see ScrubbingFormatter).
LOG_SCRUBBER = Scrubber()


class ScrubbingFormatter(logging.Formatter):
    """A log line, traceback included, with every secret the config holds replaced by ***."""

    def format(self, record: logging.LogRecord) -> str:
        return LOG_SCRUBBER(super().format(record))
