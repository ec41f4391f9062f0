"""Settings: read and validated once by an entrypoint (CLI, app factory), then passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_STRIPE_WEBHOOK_SECRET = "whsec_synchub_local_dev_only"  # noqa: S105 - local dev default, not a credential


class Settings(BaseSettings):
    """Every setting synchub reads, from `SYNCHUB_*` environment variables."""

    model_config = SettingsConfigDict(env_prefix="SYNCHUB_", extra="ignore")

    data_dir: Path = Path(".synchub")
    database_url: str | None = Field(default=None, description="default: SQLite in data_dir")
    register_dir: Path = Path("register")
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    public_url: str | None = Field(
        default=None,
        description="the API's base URL: the OAuth issuer; default: http://{host}:{port}",
    )
    key_encryption_key: SecretStr | None = Field(
        default=None,
        description="base64 of 32 bytes that encrypt signing keys at rest; "
        "default: a key file created in data_dir",
    )
    redis_url: str | None = Field(
        default=None,
        description="rate limits shared by every "
        "process through Redis; default: in this process's memory",
    )
    worker_threads: int = Field(default=4, ge=1, le=64)
    delivery_lease_seconds: float = Field(
        default=60.0,
        ge=5.0,
        le=3600.0,
        description="how long a worker's claim on a delivery lasts without renewal (renewed "
        "every third of it while the attempt runs); a killed worker's deliveries are retaken "
        "after at most this long",
    )
    log_level: str = "INFO"
    log_json: bool = True

    stripe_webhook_secret: SecretStr = SecretStr(DEV_STRIPE_WEBHOOK_SECRET)
    stripe_api_key: SecretStr | None = None
    hubspot_token: SecretStr | None = None
    hubspot_client_secret: SecretStr | None = Field(
        default=None,
        description="the HubSpot app's client secret: verifies its webhook notifications "
        "(contact merges); default: none, so live HubSpot webhooks are refused",
    )
    intercom_token: SecretStr | None = None
    intercom_client_secret: SecretStr | None = Field(
        default=None,
        description="the Intercom app's client secret: verifies its webhook notifications "
        "(X-Hub-Signature); default: none, so live Intercom webhooks are refused",
    )
    xero_token: SecretStr | None = None
    xero_tenant_id: str | None = None
    xero_client_id: str | None = Field(
        default=None, description="the Xero app's client id, for `auth: oauth` connections"
    )
    xero_client_secret: SecretStr | None = Field(
        default=None, description="the Xero app's client secret, for `auth: oauth` connections"
    )
    hubspot_client_id: str | None = Field(
        default=None, description="the HubSpot app's client id, for `auth: oauth` connections"
    )
    vendor_token_refresh_margin_seconds: float = Field(
        default=300.0,
        ge=60.0,
        le=1200.0,
        description="refresh a vendor OAuth access token when less than this is left of it",
    )
    vendor_oauth_state_ttl_seconds: float = Field(
        default=600.0,
        ge=60.0,
        le=3600.0,
        description="how long a started `synchub connections authorize` waits for its callback",
    )
    product_callback_url: str = "http://127.0.0.1:9090/synchub/callbacks"
    product_callback_secret: SecretStr | None = None
    sandbox_url: str | None = Field(
        default=None,
        description="a shared sandbox server (`synchub sandbox serve`) that sandbox-mode "
        "connections send their vendor HTTP to; default: in-process sandboxes",
    )
    webhook_egress_proxy: str | None = Field(
        default=None,
        description="an HTTP(S) proxy that every partner webhook goes out through; default: "
        "direct, to the addresses the SSRF guard checked",
    )

    webhook_private_targets: Literal["auto", "sandbox", "none"] = Field(
        default="auto",
        description="whether sandbox workspaces may register partner webhooks on loopback "
        "(http://127.0.0.1:…, localhost): 'sandbox' yes, 'none' never, 'auto' only when this "
        "hub listens on loopback and its public URL is loopback (local development)",
    )

    def resolved_public_url(self) -> str:
        """The API's base URL without a trailing slash; follows host and port unless set."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'synchub.db').resolve()}"
