"""Settings that derive from others."""

from __future__ import annotations

from synchub.config import Settings


def test_the_issuer_follows_the_serve_port_unless_set() -> None:
    assert Settings(port=8093).resolved_public_url() == "http://127.0.0.1:8093"
    assert Settings(host="0.0.0.0", port=9000).resolved_public_url() == "http://0.0.0.0:9000"  # noqa: S104
    proxied = Settings(port=8093, public_url="https://hub.example.co.nz/")
    assert proxied.resolved_public_url() == "https://hub.example.co.nz"
