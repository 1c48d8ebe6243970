"""The proxy setting and its routing (ccf_agent.proxies, httpclient.proxy): pure, no proxy needed."""

from __future__ import annotations

import pytest

from ccf_agent.config import parse_config
from ccf_agent.credentials import Scrubber, config_secrets
from ccf_agent.httpclient.proxy import Router
from ccf_agent.proxies import Proxy

CONFIG = """\
state_dir: /tmp/ccf-state
inputs: [{id: app, paths: ["/var/log/ccf/*.log"]}]
outputs:
  logs: {type: elasticsearch, hosts: ["https://es1:9200"], proxy_url: "http://ccf:${PROXY_PW}@proxy.internal:3128"}
alerts:
  notifiers:
    hook: {type: webhook, url: "https://hooks.example/T0000", proxy_url: "http://n:notifier-pw-9@proxy.internal:3128"}
"""


@pytest.mark.parametrize("value, expected", [
    (None, Proxy()), ("", Proxy()), ("none", Proxy(None, env=False)), ("off", Proxy(None, env=False)),
    (False, Proxy(None, env=False)), ("http://proxy:3128", Proxy("http://proxy:3128", env=False)),
])
def test_proxy_url_values(value: object, expected: Proxy) -> None:
    assert Proxy.parse(value) == expected


def test_an_explicit_proxy_serves_every_destination_and_hides_its_password() -> None:
    route = Router(Proxy.parse("http://ccf:pw-123@proxy:3128")).route("https://es1:9200/_bulk")
    assert route is not None and route.url == "http://proxy:3128" and route.shown == "http://***@proxy:3128"
    assert route.auth == {"Proxy-Authorization": "Basic Y2NmOnB3LTEyMw=="}


def test_the_environment_is_read_per_scheme_with_no_proxy_exempting_hosts() -> None:
    env = {"HTTPS_PROXY": "http://secure-proxy:3128", "http_proxy": "http://plain-proxy:3128",
           "NO_PROXY": "localhost,.internal"}
    router = Router(Proxy(), env)
    assert router.route("https://es1:9200/").url == "http://secure-proxy:3128"  # type: ignore[union-attr]
    assert router.route("http://es1:9200/").url == "http://plain-proxy:3128"  # type: ignore[union-attr]
    assert router.route("https://es.internal:9200/") is None
    assert router.route("http://localhost:9200/") is None


def test_proxy_url_none_ignores_the_environment() -> None:
    assert Router(Proxy.parse("none"), {"HTTPS_PROXY": "http://proxy:3128"}).route("https://es1:9200/") is None


def test_a_socks_proxy_in_the_environment_is_refused_with_the_variables_name() -> None:
    with pytest.raises(ValueError, match="HTTPS_PROXY must be an http:// or https:// proxy URL"):
        Router(Proxy(), {"HTTPS_PROXY": "socks5://proxy:1080"}).route("https://es1:9200/")


def test_proxy_passwords_of_outputs_notifiers_and_the_environment_are_scrubbed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://envuser:env-proxy-pw@proxy:3128")
    config = parse_config(CONFIG, env={"PROXY_PW": "output-proxy-pw"})
    scrub = Scrubber(config_secrets(config))
    text = ("output-proxy-pw notifier-pw-9 env-proxy-pw "
            "Y2NmOm91dHB1dC1wcm94eS1wdw==")  # Basic ccf:output-proxy-pw, as sent
    assert scrub(text) == "*** *** *** ***"
