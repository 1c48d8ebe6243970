"""A test PKI made with openssl: a CA, a server certificate for localhost and 127.0.0.1, a client
certificate, and the bad ones a client must refuse (expired, for another host, from another CA)."""

from __future__ import annotations

import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here
    expired_cert: Path  # for localhost, signed by `ca`, no longer valid
    expired_key: Path
    other_host_cert: Path  # signed by `ca`, for another host name only
    other_host_key: Path

    def context(self, cert: Path, key: Path) -> ssl.SSLContext:
        """A server context presenting `cert`."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        return ctx


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(d: Path) -> Pki:
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2", "-subj", f"/CN=ccf test {ca}",
                 "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                 cwd=d)
    server = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
    _issue(d, "server", "/CN=localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\n" + server)
    _issue(d, "client", "/CN=ccf-agent", "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
           "extendedKeyUsage=clientAuth\n")
    # -days -1: valid until a day before it was issued, that is expired at once.
    _issue(d, "expired", "/CN=localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\n" + server, days="-1")
    _issue(d, "other-host", "/CN=es.elsewhere.example", "subjectAltName=DNS:es.elsewhere.example\n" + server)
    return Pki(d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem", d / "client.key",
               d / "other-ca.pem", d / "expired.pem", d / "expired.key", d / "other-host.pem", d / "other-host.key")


def _issue(d: Path, name: str, subject: str, ext: str, days: str = "2") -> None:
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=d)
    (d / f"{name}.ext").write_text(ext)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", f"{name}.pem", "-days", days, "-sha256", "-extfile", f"{name}.ext", cwd=d)


def server_context(pki: Pki, client_certs: bool = False) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.server_cert, pki.server_key)
    if client_certs:
        ctx.load_verify_locations(pki.ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


