"""The SSRF guard for partner webhook URLs, checked at registration and before every attempt.

A URL passes when its scheme suits the workspace (live: https only; sandbox: https, or http
to loopback) and EVERY address its host resolves to is public: not loopback (except in
sandbox workspaces when the hub's private-targets policy allows it, see
`private_targets_policy`), private, link-local, carrier-grade NAT, multicast, unspecified,
reserved, or a cloud metadata address. IPv4 addresses embedded in IPv6 (mapped, 6to4,
NAT64) are judged as the IPv4 address. The delivery then connects to one of the addresses
that were checked (see destination.py), so a DNS answer that changes between the check and
the connection cannot redirect it.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import httpx

from synchub.core.errors import FieldProblem, ValidationError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[IPAddress]]

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack instance metadata
        "fd00:ec2::254",  # AWS instance metadata over IPv6
        "169.254.170.2",  # AWS ECS task metadata
        "100.100.100.200",  # Alibaba Cloud metadata
    )
)
CARRIER_GRADE_NAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")

# SYNCHUB_WEBHOOK_PRIVATE_TARGETS: may sandbox workspaces send webhooks to loopback?
# "sandbox": yes (local development); "none": never; "auto": "sandbox" on a hub that only
# this machine can reach (it listens on loopback and its public URL is loopback), else "none".
PrivateTargets = Literal["auto", "sandbox", "none"]


class UnsafeUrlError(ValidationError):
    """A webhook URL the hub refuses to call (422, pointing at /url)."""

    code = "unsafe_webhook_url"

    def __init__(self, detail: str) -> None:
        super().__init__(f"webhook URL refused: {detail}", [FieldProblem("/url", detail)])
        self.detail = detail


@dataclass(frozen=True)
class CheckedTarget:
    """A URL that passed the guard, with the addresses it was checked at (connect to these)."""

    url: httpx.URL
    addresses: tuple[IPAddress, ...]

    @property
    def public(self) -> bool:
        """Whether every address is public (False for a sandbox's loopback receiver): only a
        public target's answer bodies are kept, so the hub never reads back a local service."""
        return all(address_problem(a) is None for a in self.addresses)


def _embedded_ipv4(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address in NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def address_problem(address: IPAddress, *, allow_loopback: bool = False) -> str | None:
    """Why webhooks may not go to an address (None when they may)."""
    address = _embedded_ipv4(address)
    checks = (
        (address in METADATA_ADDRESSES, "a cloud metadata address"),
        (address.is_loopback and not allow_loopback, "a loopback address"),
        (address.is_unspecified, "an unspecified address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address in CARRIER_GRADE_NAT, "a carrier-grade NAT address"),
    )
    for refused, what in checks:
        if refused:
            return what
    if address.is_loopback:
        return None  # allowed above: a sandbox workspace's local receiver
    if address.is_reserved:
        return "a reserved address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "a reserved address"
    return None


def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Every address a host resolves to, in the resolver's order (a literal IP is itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        raise UnsafeUrlError(f"the host {host!r} does not resolve") from exc
    addresses: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def parse_url(url: str) -> httpx.URL:
    """An absolute http(s) URL with a host, no credentials and no fragment."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise UnsafeUrlError("not a valid URL") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UnsafeUrlError("give an absolute https:// URL")
    if parsed.userinfo:
        raise UnsafeUrlError("the URL must not carry a user name or password")
    if parsed.fragment:
        raise UnsafeUrlError("the URL must not have a #fragment")
    return parsed


def _is_loopback_host(host: str) -> bool:
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return _embedded_ipv4(ipaddress.ip_address(host)).is_loopback
    except ValueError:
        return False


def private_targets_policy(
    setting: PrivateTargets, *, host: str, public_url: str
) -> Literal["sandbox", "none"]:
    """The policy a hub applies: "auto" allows loopback targets in sandbox workspaces only on
    a hub nobody else can reach (listening on loopback, with a loopback public URL)."""
    if setting != "auto":
        return setting
    try:
        public_host = httpx.URL(public_url).host
    except (httpx.InvalidURL, TypeError, ValueError):
        return "none"
    local = _is_loopback_host(host) and _is_loopback_host(public_host)
    return "sandbox" if local else "none"


def check_url(
    url: str,
    *,
    workspace_kind: str,
    resolve: Resolver = resolve_host,
    private_targets: Literal["sandbox", "none"] = "none",
) -> CheckedTarget:
    """Check a webhook URL for a workspace ('live' or 'sandbox'); UnsafeUrlError says why not.

    `private_targets` is the hub's policy (private_targets_policy): with "none" a sandbox
    workspace may call only public addresses, as a live one, and so only over https (plain
    http is for loopback receivers).
    """
    parsed = parse_url(url)
    sandbox = workspace_kind == "sandbox"
    loopback_allowed = sandbox and private_targets == "sandbox"
    if parsed.scheme != "https" and not sandbox:
        raise UnsafeUrlError("live workspaces deliver over https only")
    host = parsed.raw_host.decode("ascii")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses = resolve(host, port)
    if not addresses:
        raise UnsafeUrlError(f"the host {host!r} does not resolve")
    for address in addresses:
        problem = address_problem(address, allow_loopback=loopback_allowed)
        if problem is not None:
            why = f"the host {host!r} resolves to {problem}"
            if sandbox and problem == "a loopback address":
                why += " (this hub does not allow private webhook targets)"
            raise UnsafeUrlError(why)
    if parsed.scheme != "https" and not all(_embedded_ipv4(a).is_loopback for a in addresses):
        raise UnsafeUrlError("sandbox workspaces may use plain http only on loopback; use https")
    return CheckedTarget(url=parsed, addresses=tuple(addresses))
