"""Credentials on the wire: the Authorization header from an output's keys, and the Basic auth a
URL's `user:password@` stands for (the URL itself is then requested, and shown, without it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ccf_agent.credentials import basic_auth, safe_url, split_userinfo

if TYPE_CHECKING:
    from ccf_agent.config import OutputConfig


def auth_header(cfg: OutputConfig) -> str | None:
    """api_key, else bearer_token, else username/password: the output's own credentials."""
    if cfg.api_key:
        return f"ApiKey {cfg.api_key}"
    if cfg.bearer_token:
        return f"Bearer {cfg.bearer_token}"
    if cfg.username:
        return basic_auth(cfg.username, cfg.password or "")
    return None


@dataclass(frozen=True)
class Endpoint:
    """A configured URL split into what is requested, what may be shown, and its credentials."""

    url: str  # without user:password@
    shown: str  # without user:password@ or secret query values: safe in messages and /status
    auth: str | None = field(default=None, repr=False)  # Basic auth from user:password@, if any

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        bare, user, password = split_userinfo(url)
        return cls(bare, safe_url(bare), basic_auth(user, password or "") if user is not None else None)
