"""The guarded outgoing HTTP client against real local servers (plain and TLS): refusals after
DNS resolution, the operator's allowlist, connecting to the address checked, bounded answers."""

from __future__ import annotations

import ipaddress
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from conveyor.config import Settings
from conveyor.egress import EgressClient, EgressPolicy, IPAddress, parse_allowlist
from conveyor.errors import EgressFailed, EgressRefused
from conveyor.testing.receiver import Receiver


@pytest.fixture()
def server() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def client(*allow: str, **options: Any) -> EgressClient:
    return EgressClient(EgressPolicy(allow=parse_allowlist(allow), **options))


def hosts(table: dict[str, list[str]]) -> Any:
    """A hosts-file resolver: a name's addresses from ``table``; other hosts as the OS says."""
    from conveyor.egress import system_resolver

    def resolve(host: str, port: int) -> list[IPAddress]:
        if host in table:
            return [ipaddress.ip_address(a) for a in table[host]]
        return system_resolver(host, port)

    return resolve


def test_a_local_server_is_refused_unless_allowlisted(server: Receiver) -> None:
    with client() as guarded, pytest.raises(EgressRefused, match="loopback"):
        guarded.post(server.url + "/x", content=b"{}")
    assert server.received == []
    with client(server.allow_entry) as guarded:
        assert guarded.post(server.url + "/x", content=b"{}").status_code == 200
    with client("127.0.0.0/8") as guarded:
        assert guarded.post(server.url + "/y").status_code == 200
    # An entry for another port of the same address does not open this one.
    with client(f"127.0.0.1:{server.port + 1}") as guarded, pytest.raises(EgressRefused):
        guarded.post(server.url + "/z")
    assert [r.path for r in server.received] == ["/x", "/y"]


# Every form from issue 11 item 4, and their relatives; each on the receiver's port, so a
# request that got through would be seen by it.
FORMS = [
    "http://169.254.169.254{port}/latest/meta-data/",
    "http://127.0.0.1{port}/",
    "http://[::1]{port}/",
    "http://localhost{port}/",
    "http://0{port}/",
    "http://2130706433{port}/",
    "http://0x7f.1{port}/",
    "http://0177.0.0.1{port}/",
    "http://127.1{port}/",
    "http://metadata.google.internal{port}/computeMetadata/v1/",
    "http://user:pass@127.0.0.1{port}/",
    "http://[::ffff:127.0.0.1]{port}/",
    "http://[::ffff:169.254.169.254]{port}/",
    "http://[64:ff9b::7f00:1]{port}/",
    "http://[2002:7f00:1::]{port}/",
    "http://[fe80::1]{port}/",
    "http://[fd00:ec2::254]{port}/",
    "http://10.0.0.1{port}/",
    "http://172.16.0.1{port}/",
    "http://192.168.1.1{port}/",
    "http://100.64.0.1{port}/",
    "http://100.100.100.200{port}/",
    "http://224.0.0.1{port}/",
    "http://240.0.0.1{port}/",
    "http://255.255.255.255{port}/",
    "http://0.0.0.0{port}/",
    "http://[::]{port}/",
]


@pytest.mark.parametrize("form", FORMS)
def test_every_internal_address_form_is_refused(server: Receiver, form: str) -> None:
    url = form.format(port=f":{server.port}")
    with client() as guarded, pytest.raises(EgressRefused) as refused:
        guarded.post(url, content=b"{}")
    # Refused for what it is (or, for forms the URL parser rejects, as unusable).
    assert any(
        reason in str(refused.value)
        for reason in ("CONVEYOR_EGRESS_ALLOW", "credentials", "metadata name", "cannot be used")
    )
    with pytest.raises(EgressRefused):
        EgressPolicy().check_url(url)  # the check a form or an API makes when a URL is saved
    assert server.received == []


def test_credentials_in_the_url_are_refused_even_when_allowlisted(server: Receiver) -> None:
    with client(server.allow_entry) as guarded, pytest.raises(EgressRefused, match="credentials"):
        guarded.post(f"http://user:pass@127.0.0.1:{server.port}/")
    assert server.received == []


def test_a_name_that_resolves_to_a_private_address_is_refused(server: Receiver) -> None:
    resolve = hosts({"hooks.example.com": ["93.184.216.34", "10.1.2.3"]})
    with client(resolve=resolve) as guarded, pytest.raises(EgressRefused) as refused:
        guarded.post(f"http://hooks.example.com:{server.port}/")
    assert "hooks.example.com resolves to 10.1.2.3, a private address" in str(refused.value)


def test_it_connects_to_the_address_it_checked(server: Receiver) -> None:
    """DNS rebinding: the first answer is allowed, every later one points elsewhere. The guard
    resolves once per request and connects to the address it checked, naming the host in the
    Host header."""
    answers = iter(["127.0.0.1"])
    calls: list[str] = []

    def rebinding(host: str, port: int) -> list[IPAddress]:
        calls.append(host)
        return [ipaddress.ip_address(next(answers, "169.254.169.254"))]

    with client(server.allow_entry, resolve=rebinding) as guarded:
        answer = guarded.post(f"http://hooks.example.com:{server.port}/pinned")
    assert answer.status_code == 200 and calls == ["hooks.example.com"]
    assert server.received[0].headers["Host"] == f"hooks.example.com:{server.port}"
    with client(server.allow_entry, resolve=rebinding) as guarded, pytest.raises(EgressRefused):
        guarded.post(f"http://hooks.example.com:{server.port}/rebound")
    assert len(server.received) == 1


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for hooks.example.com (made with the openssl command)."""
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=hooks.example.com", "-addext", "subjectAltName=DNS:hooks.example.com",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_https_keeps_the_name_for_sni_and_the_certificate(
    certificate: tuple[Path, Path],
) -> None:
    cert, key = certificate
    serving = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    serving.load_cert_chain(cert, key)
    server = Receiver(tls=serving).start()
    trust = ssl.create_default_context(cafile=str(cert))
    try:
        policy = EgressPolicy(
            allow=parse_allowlist([server.allow_entry]),
            resolve=hosts({"hooks.example.com": ["127.0.0.1"]}),
        )
        with EgressClient(policy, verify=trust) as guarded:
            answer = guarded.post(f"https://hooks.example.com:{server.port}/tls", content=b"{}")
            assert answer.status_code == 200
            # The certificate names hooks.example.com, not the address connected to.
            with pytest.raises(EgressFailed, match=r"CERTIFICATE_VERIFY_FAILED|match"):
                guarded.post(f"https://127.0.0.1:{server.port}/by-address")
        got = server.on("/tls")[0]
        assert got.sni == "hooks.example.com"
        assert got.headers["Host"] == f"hooks.example.com:{server.port}"
    finally:
        server.stop()


def test_redirects_are_not_followed(server: Receiver) -> None:
    server.script["/moved"] = [(302, b"")]
    with client(server.allow_entry) as guarded:
        answer = guarded.post(server.url + "/moved")
    assert answer.status_code == 302 and len(server.received) == 1


def test_answers_are_read_up_to_a_bound_and_never_echoed(server: Receiver) -> None:
    server.script["/big"] = [(200, b"x" * 300_000)]
    server.script["/secret"] = [(500, b"INTERNAL-ONLY secret=hunter2")]
    with client(server.allow_entry, max_response_bytes=100_000) as guarded:
        with pytest.raises(EgressFailed, match="larger than 100000 bytes"):
            guarded.post(server.url + "/big")
        assert guarded.post(server.url + "/big", max_bytes=0).content == b""
        failed = guarded.post(server.url + "/secret", max_bytes=0)
    assert failed.status_line == "HTTP 500" and failed.content == b""


def test_a_slow_receiver_times_out() -> None:
    class Slow(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            time.sleep(3)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    slow = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=slow.serve_forever, daemon=True).start()
    try:
        port = slow.server_address[1]
        guarded = client(f"127.0.0.1:{port}", timeout=0.5)
        with guarded, pytest.raises(EgressFailed, match=r"no answer within 0\.5 s"):
            guarded.post(f"http://127.0.0.1:{port}/")
    finally:
        slow.shutdown()
        slow.server_close()


def test_the_allowlist_setting_is_read_and_checked() -> None:
    settings = Settings(egress_allow="10.20.0.0/16, hooks.internal:8443,[fd00::5]:443")
    allow = EgressPolicy.from_settings(settings).allow
    assert allow.permits("x", ipaddress.ip_address("10.20.3.4"), 80)
    assert allow.permits("hooks.internal", ipaddress.ip_address("10.9.9.9"), 8443)
    assert not allow.permits("hooks.internal", ipaddress.ip_address("10.9.9.9"), 80)
    assert allow.permits("fd00::5", ipaddress.ip_address("fd00::5"), 443)
    assert Settings(egress_allow='["127.0.0.1:9"]').egress_allow == ["127.0.0.1:9"]
    with pytest.raises(ValidationError, match="not a network"):
        Settings(egress_allow="hooks internal")
