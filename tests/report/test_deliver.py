"""--send: e-mail to a real SMTP server on 127.0.0.1 over STARTTLS, and posts to the alert notifiers."""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.harness import free_port
from tests.outputs.conftest import pki  # noqa: F401 - the throwaway CA and a server cert for 127.0.0.1
from tests.report.helpers import files_config, report, write_config
from tests.report.workload import CARD, DAY, TZ, generate, write_logs

PASSWORD = "smtp-pw-8d1f"


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes, bool]] = []  # (from, to, data, was TLS)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content,
                              session.ssl is not None))
        return "250 OK"


def check_login(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"ccf-reports", PASSWORD.encode())
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp_server(pki: Path) -> Iterator[tuple[int, Inbox]]:  # noqa: F811 - the imported fixture
    """aiosmtpd on 127.0.0.1: STARTTLS with a certificate of the test CA, required before anything
    else, and a login required (only over TLS)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, tls_context=ctx, require_starttls=True,
                            auth_required=True, auth_require_tls=True, authenticator=check_login)
    controller.start()
    try:
        yield port, inbox
    finally:
        controller.stop()


def mail_config(tmp_path: Path, port: int, ca: Path, password: str = "${SMTP_PASSWORD}") -> Path:
    day = generate(2000)
    write_logs(day, tmp_path / "logs", rotated=False)
    return write_config(tmp_path, {**files_config(tmp_path / "logs", TZ), "report": {"top": 10, "smtp": {
        "host": "127.0.0.1", "port": port, "username": "ccf-reports", "password": password,
        "from": "ccf-agent@example.invalid", "to": ["admin@yourdomain.com", "ops@yourdomain.com"],
        "tls": {"ca_file": str(ca)}}}})


def test_the_report_is_mailed_over_starttls_with_the_guides_subject_and_text_body(tmp_path, smtp_server, pki):  # noqa: F811
    port, inbox = smtp_server
    config = mail_config(tmp_path, port, pki / "ca.pem")
    r = report(config, "--date", DAY.isoformat(), "--send", env={"SMTP_PASSWORD": PASSWORD, "PATH": "/usr/bin"})
    [(sender, rcpt, data, tls)] = inbox.messages
    assert (sender, rcpt, tls) == ("ccf-agent@example.invalid", ["admin@yourdomain.com", "ops@yourdomain.com"], True)
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert msg["Subject"] == "Daily Log Report - 2024-03-31"
    text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")  # SMTP's line ends
    html = msg.get_body(("html",)).get_content()
    assert text == r.stdout  # the text report, as printed
    assert text.startswith("=== Daily Log Analysis Report - 2024-03-31 ===\nTotal Errors: ")
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html
    assert CARD not in data.decode(errors="replace") and PASSWORD not in r.stderr


def test_a_server_certificate_the_ca_file_does_not_vouch_for_is_refused_and_nothing_is_sent(
        tmp_path, smtp_server, pki):  # noqa: F811
    port, inbox = smtp_server
    config = mail_config(tmp_path, port, Path("/etc/ssl/certs/ca-certificates.crt"))
    r = report(config, "--date", DAY.isoformat(), "--send", env={"SMTP_PASSWORD": PASSWORD, "PATH": "/usr/bin"},
               check=False)
    assert r.returncode == 1 and "TLS with 127.0.0.1" in r.stderr and "CERTIFICATE_VERIFY_FAILED" in r.stderr
    assert inbox.messages == [] and PASSWORD not in r.stderr


def test_a_wrong_password_is_exit_1_naming_the_server_not_the_password(tmp_path, smtp_server, pki):  # noqa: F811
    port, inbox = smtp_server
    config = mail_config(tmp_path, port, pki / "ca.pem", password="not-the-password")
    r = report(config, "--date", DAY.isoformat(), "--send", check=False)
    assert r.returncode == 1 and f"127.0.0.1:{port} refused the login of ccf-reports" in r.stderr
    assert "not-the-password" not in r.stderr and inbox.messages == []


class Hooks:
    """Slack, Teams, Discord and a generic webhook on 127.0.0.1, recording what they got."""

    def __init__(self) -> None:
        self.got: dict[str, tuple[str, Any]] = {}

    async def handle(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        if request.content_type == "multipart/form-data":
            form = await request.post()
            upload = form["files[0]"]
            payload = form["payload_json"]
            payload = bytes(payload).decode() if isinstance(payload, bytes | bytearray) else payload
            self.got[kind] = ("multipart", {"payload_json": payload, "filename": upload.filename,
                                            "file": upload.file.read().decode()})
        else:
            self.got[kind] = (request.content_type, await request.json())
        return web.Response(status=200 if kind != "teams" else 500, text="ok")


def test_notifiers_get_the_summary_with_the_link_and_discord_the_page_attached(tmp_path):
    hooks = Hooks()
    port = free_port()

    async def main() -> Any:
        app = web.Application()
        app.router.add_post("/{kind}", hooks.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            return await asyncio.to_thread(report, config, "--date", DAY.isoformat(), "--send", check=False)
        finally:
            await runner.cleanup()

    day = generate(2000)
    write_logs(day, tmp_path / "logs", rotated=False)
    base = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path, {**files_config(tmp_path / "logs", TZ),
                                     "alerts": {"notifiers": {k: {"type": t, "url": f"{base}/{k}"} for k, t in (
                                         ("slack", "slack"), ("teams", "teams"), ("discord", "discord"),
                                         ("hook", "webhook"), ("am", "alertmanager"))}},
                                     "report": {"url": "https://reports.example.invalid/ccf/{date}.html"}})
    r = asyncio.run(main())
    link = "https://reports.example.invalid/ccf/2024-03-31.html"
    assert sorted(hooks.got) == ["discord", "hook", "slack", "teams"]  # not Alertmanager: it takes alerts
    [attachment] = hooks.got["slack"][1]["attachments"]
    assert attachment["title"] == "WARNING: Daily Log Report - 2024-03-31" and attachment["title_link"] == link
    fields = {f["title"]: f["value"] for f in attachment["fields"]}
    assert fields["Failed Payouts"] == str(sum(1 for x in day.inside() if x.kind == "failed"))
    kind, discord = hooks.got["discord"]
    assert kind == "multipart" and discord["filename"] == "ccf-report-2024-03-31.html"
    assert discord["file"].startswith("<!DOCTYPE html>") and link in discord["payload_json"]
    hook = hooks.got["hook"][1]
    assert hook["message"] == "Daily Log Report - 2024-03-31" and hook["link"] == link
    assert hook["report"]["failed"] == int(fields["Failed Payouts"])
    # Teams answered 500: the others were still delivered, and the run says which one failed.
    assert r.returncode == 1 and "notifier teams (teams): HTTP 500" in r.stderr and base not in r.stderr
