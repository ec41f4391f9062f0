"""One refresh across real processes on PostgreSQL (ADR 0023): three processes find the Xero
access token about to expire at the same moment; the credential row's lock lets one refresh,
the others wait, re-read and use its token. The shared sandbox server refuses any refresh
token sent twice (`invalid_grant`) and counts such reuses."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from synchub.connectors.chaos import ChaosRates
from synchub.connectors.oauth import XERO, OAuthApp, OAuthClient
from synchub.connectors.remote_sandbox import RemoteSandboxTransport
from synchub.connectors.sandbox_server import BackgroundSandboxServer, HostedSandboxes
from synchub.connectors.xero.sandbox import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET
from synchub.core.clock import FixedClock
from synchub.db import make_database
from synchub.register.model import BreakerPolicy
from synchub.vault.service import VendorCredentials
from synchub.vault.store import Vault

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
START = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)

CHILD = """
import os, sys, time
from datetime import datetime, timedelta
import httpx
from synchub.connectors.oauth import XERO, OAuthApp, OAuthClient
from synchub.vault.service import VendorCredentials
from synchub.connectors.remote_sandbox import RemoteSandboxTransport
from synchub.core.clock import FixedClock
from synchub.db import make_database
from synchub.vault.store import Vault

url, sandbox, kek, now, go = sys.argv[1:6]
clock = FixedClock(datetime.fromisoformat(now))
app = OAuthApp(XERO, client_id=os.environ["CID"], client_secret=os.environ["CSECRET"],
               redirect_uri="http://127.0.0.1:8080/oauth/callback/xero")
http = httpx.Client(transport=RemoteSandboxTransport(sandbox, vendor="xero"))
service = VendorCredentials(make_database(url), Vault(bytes.fromhex(kek)), clock=clock,
                            workspace="live", clients={"xero": OAuthClient(http, app, clock=clock)},
                            policies={})
while time.time() < float(go):
    time.sleep(0.005)
print(service.source("xero").access_token(), flush=True)
"""


def test_processes_racing_for_a_refresh_send_the_refresh_token_once(
    postgres_url: str, tmp_path: Path
) -> None:
    hosted = HostedSandboxes(rates=ChaosRates(), hang_seconds=0.1, stripe_start=START)
    server = BackgroundSandboxServer(hosted)
    server.start()
    kek = os.urandom(32)
    db = make_database(postgres_url)
    http = httpx.Client(transport=RemoteSandboxTransport(server.url, vendor="xero"))
    try:
        with db.write() as conn:
            for table in ("vendor_credentials", "vendor_oauth_states", "vault_keys"):
                conn.exec_driver_sql(f"DELETE FROM {table}")  # noqa: S608 - fixed names
        clock = FixedClock(START)
        app = OAuthApp(
            XERO,
            client_id=SANDBOX_CLIENT_ID,
            client_secret=SANDBOX_CLIENT_SECRET,
            redirect_uri="http://127.0.0.1:8080/oauth/callback/xero",
        )
        service = VendorCredentials(
            db,
            Vault(kek),
            clock=clock,
            workspace="live",
            clients={"xero": OAuthClient(http, app, clock=clock)},
            policies={"xero": BreakerPolicy()},
        )
        query = service.client("xero").consent_in_sandbox(service.begin_authorization("xero"))
        service.complete_authorization("xero", state=query["state"], code=query["code"])
        later = (START + timedelta(minutes=27)).isoformat()
        go = time.time() + 4.0  # every child imports first, then they start together
        env = {**os.environ, "CID": SANDBOX_CLIENT_ID, "CSECRET": SANDBOX_CLIENT_SECRET}
        children = [
            subprocess.Popen(  # noqa: S603 - our own interpreter and script
                [sys.executable, "-c", CHILD, postgres_url, server.url, kek.hex(), later, str(go)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for _ in range(3)
        ]
        outputs = [child.communicate(timeout=60) for child in children]
        assert [c.returncode for c in children] == [0, 0, 0], [o[1][-2000:] for o in outputs]
        tokens = {out.strip() for out, _ in outputs}
        assert hosted.xero.oauth.reused_refresh_tokens == 0
        assert hosted.xero.oauth.refreshes == 1
        assert len(tokens) == 1
        assert tokens <= hosted.xero.oauth.access_tokens
    finally:
        http.close()
        db.dispose()
        server.stop()
