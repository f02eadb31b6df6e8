"""One guarded client for every HTTP request Conveyor sends out: webhooks (and their Test
button), anchoring services, Ethereum RPC nodes, the providers of packs to come.

A URL a user types (a webhook) must not become a way into the network the API and the workers
sit in: the cloud's metadata service, Redis on localhost, PostgreSQL on the private subnet.
So for every request, each redirect hop included:

1. the URL must be ``http``/``https`` with a host and without ``user:pass@``;
2. the host is resolved here, once, the way the operating system resolves it (``0``,
   ``2130706433`` and ``0x7f.1`` are the loopback and "any" addresses they are to the OS), and
   every address it resolves to must be public: not private, loopback, link-local, multicast,
   unspecified, reserved or shared (CGNAT), nor an IPv6 form that wraps such an IPv4 address
   (IPv4-mapped, NAT64, 6to4, Teredo); cloud metadata names are refused by name;
3. the connection goes to the address that was checked: the request's URL is rewritten to it
   while the ``Host`` header and TLS (SNI and the certificate check) keep the name, so a second,
   different DNS answer (rebinding) is never used;
4. timeouts bound every phase, answers are read up to a size, redirects are not followed.

An operator who needs an internal receiver lists it in ``CONVEYOR_EGRESS_ALLOW``: networks
(``10.20.0.0/16``), addresses, ``host:port`` or bare host names. An entry is trusted as given
(a name entry trusts whatever that name resolves to).

A receiver's answer body is never part of an error message; callers show a status line
(``HTTP 500``) or the refusal's reason. Exceptions (see :mod:`conveyor.errors`)::

    EgressError      the request did not go well
    ├── EgressRefused    the destination was refused; nothing was sent
    └── EgressFailed     tried, but no usable answer: connection, timeout, size
"""

from __future__ import annotations

import ipaddress
import json as jsonlib
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from conveyor.errors import EgressFailed, EgressRefused

if TYPE_CHECKING:
    from conveyor.config import Settings

__all__ = [
    "Allowlist",
    "Answer",
    "EgressClient",
    "EgressPolicy",
    "GuardedTransport",
    "address_problem",
    "parse_allowlist",
    "system_resolver",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[IPAddress]]
"""``(host, port) -> addresses``; :func:`system_resolver` asks the OS."""

DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024

METADATA_NAMES = frozenset(
    {"metadata", "metadata.google.internal", "metadata.goog", "instance-data",
     "instance-data.ec2.internal", "metadata.azure.internal"}
)  # fmt: skip
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)
SHARED = ipaddress.IPv4Network("100.64.0.0/10")  # RFC 6598, carrier-grade NAT
NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))

_KINDS = (
    ("is_unspecified", "an unspecified"),
    ("is_loopback", "a loopback"),
    ("is_link_local", "a link-local"),
    ("is_multicast", "a multicast"),
    ("is_private", "a private"),
    ("is_reserved", "a reserved"),
)


def address_problem(ip: IPAddress) -> str | None:
    """Why Conveyor must not connect to ``ip`` (``"127.0.0.1 is a loopback address"``), or
    None for a public address."""
    kind = _kind(ip)
    return None if kind is None else f"{ip} is {kind}"


def _kind(ip: IPAddress) -> str | None:
    """What sort of non-public address ``ip`` is (``"a loopback address"``), or None."""
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None and (kind := _kind(inner)):
            return f"an IPv6 form of {inner}, {kind}"
    for attribute, name in _KINDS:
        if getattr(ip, attribute):
            return f"{name} address"
    if ip in SHARED:
        return "a shared (carrier-grade NAT) address"
    if not ip.is_global:
        return "not a public address"
    return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, NAT64, 6to4, Teredo client), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if any(ip in net for net in NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    return ip.teredo[1] if ip.teredo is not None else None


def system_resolver(host: str, port: int) -> list[IPAddress]:
    """The addresses the OS resolves ``host`` to (names, and numeric forms such as ``0``,
    ``2130706433`` or ``0x7f.1`` exactly as the OS reads them)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise EgressFailed(f"cannot resolve {host!r}: {exc}") from exc
    found: list[IPAddress] = []
    for *_, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])  # drop an IPv6 scope id
        if ip not in found:
            found.append(ip)
    return found


@dataclass(frozen=True)
class Allowlist:
    """Internal destinations an operator allows: networks (any port) and host/port pairs."""

    networks: tuple[IPNetwork, ...] = ()
    endpoints: frozenset[tuple[str, int | None]] = frozenset()
    """(host name or address text, port or None for any port)."""

    def permits(self, host: str, ip: IPAddress, port: int) -> bool:
        """Whether a request to ``host`` on ``port``, resolved to ``ip``, is allowed."""
        plain = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip
        if any(plain in net or ip in net for net in self.networks):
            return True
        return any(
            h in (host, str(plain), str(ip)) and p in (None, port) for h, p in self.endpoints
        )

    def names(self, host: str, port: int) -> bool:
        """Whether ``host`` itself (a name) is listed, for this port or any."""
        return (host, port) in self.endpoints or (host, None) in self.endpoints


def parse_allowlist(entries: Iterable[str]) -> Allowlist:
    """Read ``CONVEYOR_EGRESS_ALLOW`` entries: ``10.0.0.0/8``, ``10.1.2.3``, ``fd00::/8``,
    ``10.1.2.3:8080``, ``[fd00::5]:443``, ``hooks.internal:8443``, ``hooks.internal``.
    Raises ValueError naming the entry that cannot be read."""
    networks: list[IPNetwork] = []
    endpoints: set[tuple[str, int | None]] = set()
    for raw in entries:
        entry = raw.strip().lower()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
            continue
        except ValueError:
            pass
        host, port = _host_port(entry, raw)
        endpoints.add((host, port))
    return Allowlist(tuple(networks), frozenset(endpoints))


def _host_port(entry: str, raw: str) -> tuple[str, int | None]:
    problem = (
        f"CONVEYOR_EGRESS_ALLOW entry {raw!r} is not a network (10.0.0.0/8), an address,"
        " host:port or a host name"
    )
    if entry.startswith("["):  # [IPv6]:port
        inside, _, rest = entry[1:].partition("]")
        host, port_text = inside, rest.removeprefix(":")
    elif entry.count(":") == 1:
        host, _, port_text = entry.partition(":")
    else:
        host, port_text = entry, ""
    port: int | None = None
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(problem)
        port = int(port_text)
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        labels = host.rstrip(".").split(".")
        if not host or not all(
            label and len(label) < 64 and label.replace("-", "").isalnum() for label in labels
        ):
            raise ValueError(problem) from None
        host = host.rstrip(".")
    return host, port


@dataclass(frozen=True)
class EgressPolicy:
    """Where Conveyor may send, how long it waits and how much of an answer it reads."""

    allow: Allowlist = field(default_factory=Allowlist)
    timeout: float = DEFAULT_TIMEOUT
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    resolve: Resolver = system_resolver

    @classmethod
    def from_settings(cls, settings: Settings, *, resolve: Resolver | None = None) -> EgressPolicy:
        """The policy ``CONVEYOR_EGRESS_ALLOW``, ``_TIMEOUT`` and ``_MAX_RESPONSE_BYTES`` set."""
        return cls(
            allow=parse_allowlist(settings.egress_allow),
            timeout=settings.egress_timeout,
            max_response_bytes=settings.egress_max_response_bytes,
            resolve=resolve or system_resolver,
        )

    def destination(self, url: httpx.URL) -> IPAddress:
        """The address to connect to for ``url``, once it passed every check; raises
        :class:`EgressRefused` with the reason, or :class:`EgressFailed` if the name does not
        resolve."""
        if url.scheme not in ("http", "https"):
            raise EgressRefused(f"only http:// and https:// URLs are sent to, not {url.scheme!r}")
        if url.userinfo:
            raise EgressRefused("URLs with credentials (user:password@) are refused")
        host = url.raw_host.decode("ascii").lower().rstrip(".")
        if not host:
            raise EgressRefused("the URL has no host")
        port = url.port or (443 if url.scheme == "https" else 80)
        listed_name = self.allow.names(host, port)
        if host in METADATA_NAMES and not listed_name:
            raise EgressRefused(f"{host} is a cloud metadata name")
        addresses = self.resolve(host, port)
        if not addresses:
            raise EgressFailed(f"{host!r} resolves to no address")
        if listed_name:
            return addresses[0]
        for ip in addresses:
            if self.allow.permits(host, ip, port):
                continue
            kind = _kind(ip)
            if kind is not None:
                shown = (
                    f"{ip} is {kind}"
                    if _is_address(host, ip)
                    else (f"{host} resolves to {ip}, {kind}")
                )
                raise EgressRefused(
                    f"{shown}; Conveyor sends only to public addresses unless"
                    " CONVEYOR_EGRESS_ALLOW lists the destination"
                )
        return addresses[0]

    def check_url(self, url: str) -> None:
        """Refuse ``url`` now, with the reason, if a request to it would be refused (what a
        form or an API checks when the URL is saved; the check at send time is the one that
        holds, since DNS answers change)."""
        try:
            self.destination(httpx.URL(url))
        except (httpx.InvalidURL, UnicodeError) as exc:
            raise EgressRefused(f"the URL cannot be used: {exc}") from exc


class GuardedTransport(httpx.BaseTransport):
    """An httpx transport that sends each request only to the address the policy checked.

    One connection pool per (scheme, host name, port): two names on one address never share
    a TLS connection made for the other's certificate.
    """

    def __init__(self, policy: EgressPolicy, **transport_options: Any) -> None:
        self.policy = policy
        self.options = transport_options
        self.pools: dict[tuple[str, str, int | None], httpx.HTTPTransport] = {}
        self.lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        ip = self.policy.destination(request.url)
        host = request.url.host
        key = (request.url.scheme, host, request.url.port)
        with self.lock:
            pool = self.pools.get(key)
            if pool is None:
                pool = self.pools[key] = httpx.HTTPTransport(**self.options)
        if host != str(ip):
            if request.url.scheme == "https" and not _is_address(host):
                # TLS still names the host: SNI, and the certificate is checked against it.
                request.extensions = {**request.extensions, "sni_hostname": host}
            # The Host header was set from the URL when the request was built, and stays.
            request.url = request.url.copy_with(host=str(ip))
        return pool.handle_request(request)

    def close(self) -> None:
        with self.lock:
            for pool in self.pools.values():
                pool.close()
            self.pools.clear()


def _is_address(host: str, ip: IPAddress | None = None) -> bool:
    """Whether ``host`` is an address literal (``ip`` itself, when given)."""
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip is None or literal == ip


@dataclass(frozen=True)
class Answer:
    """A receiver's answer: status, headers and at most the allowed number of body bytes."""

    status_code: int
    headers: httpx.Headers
    content: bytes
    elapsed_ms: float

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def status_line(self) -> str:
        """What may be shown or stored about the answer: ``HTTP 500``, never its body."""
        return f"HTTP {self.status_code}"

    def json(self) -> Any:
        return jsonlib.loads(self.content)


class EgressClient:
    """Sends requests through a :class:`GuardedTransport`: timeouts, no redirects, no
    proxies from the environment, answers read up to ``max_response_bytes``.

    Use it as a context manager, or call :meth:`close`; one client may send many requests.
    """

    def __init__(
        self, policy: EgressPolicy | None = None, *, verify: Any = True, user_agent: str = ""
    ) -> None:
        self.policy = policy or EgressPolicy()
        headers = {"User-Agent": user_agent} if user_agent else {}
        self.http = httpx.Client(
            transport=GuardedTransport(self.policy, verify=verify),
            timeout=self.policy.timeout,
            follow_redirects=False,
            trust_env=False,
            headers=headers,
        )

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> EgressClient:
        return cls(EgressPolicy.from_settings(settings), **options)

    def __enter__(self) -> EgressClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        content: bytes | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        max_bytes: int | None = None,
    ) -> Answer:
        """Send one request; its :class:`Answer` (any status), reading at most ``max_bytes``
        of the body (the policy's bound by default; 0 reads none). Raises
        :class:`EgressRefused` before sending anything to a refused destination, and
        :class:`EgressFailed` when no usable answer came."""
        limit = self.policy.max_response_bytes if max_bytes is None else max_bytes
        started = time.perf_counter()
        where = _where(url)
        try:
            with self.http.stream(
                method, url, content=content, json=json, headers=headers
            ) as response:
                body = _read_at_most(response, limit, where)
                return Answer(response.status_code, response.headers, body, _ms(started))
        except httpx.TimeoutException as exc:
            raise EgressFailed(
                f"{where}: no answer within {self.policy.timeout:g} s ({type(exc).__name__})"
            ) from exc
        except (httpx.InvalidURL, UnicodeError) as exc:  # nothing could be sent
            raise EgressRefused(f"the URL cannot be used: {exc}") from exc
        except httpx.HTTPError as exc:
            raise EgressFailed(f"{where}: {type(exc).__name__}: {exc}") from exc

    def post(self, url: str, **options: Any) -> Answer:
        return self.request("POST", url, **options)


def _read_at_most(response: httpx.Response, limit: int, where: str) -> bytes:
    if limit <= 0:
        return b""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            raise EgressFailed(f"{where}: the answer is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _where(url: str) -> str:
    """The URL without its path and query (which may hold tokens), for messages."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "the URL"
    return f"{parsed.scheme}://{parsed.host}" + (f":{parsed.port}" if parsed.port else "")


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0
