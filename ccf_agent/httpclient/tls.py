"""The client side of TLS, verified by default, for every connection the agent opens (HTTP, the
Beats protocol, SMTP)."""

from __future__ import annotations

import logging
import ssl
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ccf_agent.config import TlsConfig

log = logging.getLogger("ccf_agent.tls")


def client_ssl_context(tls: TlsConfig, name: str) -> ssl.SSLContext:
    """Verified by default: the CA file if given, else the system store; client certs when set."""
    try:
        ctx = ssl.create_default_context(cafile=tls.ca_file)
        if tls.cert_file:
            ctx.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"output {name}: cannot load the TLS files of its tls section: {e}") from e
    if not tls.verify:
        log.warning("output %s: TLS CERTIFICATE VERIFICATION IS OFF (tls.verify: false): anyone on the "
                    "network path can read the credentials and records, and alter what is stored", name)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
