"""Canonical events on NATS JetStream: a stream per workspace, a subject per event type, the
event id as Nats-Msg-Id so a re-publish is dropped (ADR 0010). Runs against the real NATS
at SYNCHUB_TEST_NATS_URL (default nats://127.0.0.1:4222); each test uses its own stream and
subject prefixes and deletes its streams afterwards."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import suppress
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import nats
import pytest
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from typer.testing import CliRunner

from synchub.bootstrap import load_checked_register
from synchub.cli import app
from synchub.config import Settings
from synchub.connectors.base import Attempt, OutboundEvent
from synchub.connectors.broker.base import CLOUDEVENTS_JSON, BrokerDestination, EventOrigin
from synchub.connectors.broker.model import (
    NatsOptions,
    stream_name,
    subject_covers,
    subject_for,
    workspace_token,
)
from synchub.connectors.broker.nats import NatsSink
from synchub.core.clock import FixedClock
from synchub.core.errors import PermanentError, TransientError
from synchub.core.ids import new_id
from synchub.db import Database
from synchub.events import service as events
from synchub.events.model import CATALOGUE
from synchub.events.store import attempts_of, list_deliveries
from synchub.register.loader import RegisterError
from tests.conftest import REPO
from tests.harness import Harness, make_harness

NATS_URL = os.environ.get("SYNCHUB_TEST_NATS_URL", "nats://127.0.0.1:4222")
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
T = TypeVar("T")


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "", parts.port or 4222), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def nats_url() -> str:
    """The NATS server the tests publish to; skips when nothing listens there."""
    if not _reachable(NATS_URL):
        pytest.skip(f"NATS with JetStream is not reachable at {NATS_URL} (nats-server -js)")
    return NATS_URL


def _jetstream(url: str, work: Callable[[JetStreamContext], Awaitable[T]]) -> T:
    """Run one piece of work with a JetStream context of our own (as a consumer would)."""

    async def run() -> T:
        nc = await nats.connect(url)
        try:
            return await work(nc.jetstream())
        finally:
            await nc.close()

    return asyncio.run(run())


async def _delete_streams(js: JetStreamContext, prefix: str) -> None:
    for info in await js.streams_info():
        if info.config.name and info.config.name.startswith(prefix):
            await js.delete_stream(info.config.name)


@pytest.fixture
def options(nats_url: str) -> Iterator[NatsOptions]:
    """Prefixes no other test uses; every stream under them is deleted afterwards."""
    tag = uuid.uuid4().hex[:10]
    made = NatsOptions(urls=(nats_url,), stream_prefix=f"T{tag}", subject_prefix=f"t{tag}")
    yield made
    _jetstream(nats_url, lambda js: _delete_streams(js, made.stream_prefix))


@pytest.fixture
def sink(options: NatsOptions) -> Iterator[NatsSink]:
    made = NatsSink(options, name="bus", timeout_seconds=5)
    yield made
    made.close()


def _event(clock: FixedClock, event_type: str = "invoice.paid") -> OutboundEvent:
    return OutboundEvent(
        id=new_id("event"),
        type=event_type,
        subject="inv_01TEST",
        time=clock.now(),
        payload={"object": {"id": "inv_01TEST", "total_minor": 4999}, "changed": ["status"]},
        traceparent=TRACEPARENT,
        links={},
    )


ORIGIN = EventOrigin(
    "live",
    source="/synchub/live/stripe",
    dataschema=CATALOGUE["invoice.paid"].dataschema,
    aggregate_id="cus_01TEST",
)


def _destination(sink: NatsSink) -> BrokerDestination:
    return BrokerDestination("bus", sink, origin_of=lambda _event_id: ORIGIN)


def _attempt(number: int = 1) -> Attempt:
    return Attempt(delivery_id="dlv_test", idempotency_key="synchub:dlv_test", number=number)


def _stream(url: str, name: str) -> tuple[StreamConfig, list[Any]]:
    """A stream's configuration and every message in it."""

    async def read(js: JetStreamContext) -> tuple[StreamConfig, list[Any]]:
        info = await js.stream_info(name)
        last = info.state.last_seq
        messages = [await js.get_msg(name, seq) for seq in range(info.state.first_seq, last + 1)]
        return info.config, [m for m in messages if m.subject]

    return _jetstream(url, read)


# -- the sink against the real server ------------------------------------------------------


def test_an_event_lands_in_its_workspace_stream_on_its_type_subject(
    sink: NatsSink, options: NatsOptions, clock: FixedClock
) -> None:
    event = _event(clock)

    delivered = _destination(sink).deliver(event, _attempt())

    config, [message] = _stream(NATS_URL, f"{options.stream_prefix}_live")
    assert config.subjects == [f"{options.subject_prefix}.live.>"]
    assert config.duplicate_window == options.duplicate_window_seconds
    assert message.subject == f"{options.subject_prefix}.live.invoice.paid"
    assert message.headers["Nats-Msg-Id"] == event.id
    assert message.headers["Content-Type"] == CLOUDEVENTS_JSON
    assert message.headers["traceparent"] == TRACEPARENT
    assert json.loads(message.data) == {
        "specversion": "1.0",
        "id": event.id,
        "source": "/synchub/live/stripe",
        "type": "invoice.paid",
        "subject": "inv_01TEST",
        "time": "2026-12-03T01:00:00.000Z",
        "datacontenttype": "application/json",
        "dataschema": CATALOGUE["invoice.paid"].dataschema,
        "traceparent": TRACEPARENT,
        "data": event.payload,
    }
    assert f"{options.stream_prefix}_live seq 1" in delivered.summary


def test_publishing_the_same_event_again_stores_it_once(
    sink: NatsSink, options: NatsOptions, clock: FixedClock
) -> None:
    """A retry after a lost PubAck, or another worker process, re-publishes the same id."""
    event = _event(clock)
    _destination(sink).deliver(event, _attempt(1))
    other_process = NatsSink(options, name="bus", timeout_seconds=5)

    again = _destination(sink).deliver(event, _attempt(2))
    elsewhere = _destination(other_process).deliver(event, _attempt(3))
    other_process.close()

    _, messages = _stream(NATS_URL, f"{options.stream_prefix}_live")
    assert [m.headers["Nats-Msg-Id"] for m in messages] == [event.id]
    assert "already there" in again.summary
    assert "already there" in elsewhere.summary


def test_each_workspace_gets_its_own_stream(
    sink: NatsSink, options: NatsOptions, clock: FixedClock
) -> None:
    theirs = EventOrigin(
        "sandbox-acme", source="/synchub/sandbox-acme/api", dataschema=None, aggregate_id="cus_1"
    )
    BrokerDestination("bus", sink, origin_of=lambda _id: theirs).deliver(
        _event(clock, "customer.created"), _attempt()
    )
    _destination(sink).deliver(_event(clock), _attempt())

    _, theirs_messages = _stream(NATS_URL, f"{options.stream_prefix}_sandbox-acme")
    _, ours = _stream(NATS_URL, f"{options.stream_prefix}_live")
    assert [m.subject for m in theirs_messages] == [
        f"{options.subject_prefix}.sandbox-acme.customer.created"
    ]
    assert [m.subject for m in ours] == [f"{options.subject_prefix}.live.invoice.paid"]


def test_an_existing_stream_is_adjusted_and_keeps_its_messages(
    sink: NatsSink, options: NatsOptions, clock: FixedClock
) -> None:
    name = f"{options.stream_prefix}_live"
    other = f"{options.subject_prefix}.other"

    async def prepare(js: JetStreamContext) -> None:
        await js.add_stream(name=name, subjects=[other], duplicate_window=120.0)
        await js.publish(other, b"kept")

    _jetstream(NATS_URL, prepare)

    _destination(sink).deliver(_event(clock), _attempt())

    config, messages = _stream(NATS_URL, name)
    assert config.subjects == [other, f"{options.subject_prefix}.live.>"]
    assert config.duplicate_window == options.duplicate_window_seconds
    assert messages[0].data == b"kept"
    assert len(messages) == 2


def test_subjects_held_by_another_stream_are_a_permanent_error(
    sink: NatsSink, options: NatsOptions, clock: FixedClock
) -> None:
    async def squat(js: JetStreamContext) -> None:
        await js.add_stream(
            name=f"{options.stream_prefix}_SQUATTER", subjects=[f"{options.subject_prefix}.>"]
        )

    _jetstream(NATS_URL, squat)

    with pytest.raises(PermanentError, match=r"cannot bind .* to JetStream stream"):
        _destination(sink).deliver(_event(clock), _attempt())


def test_an_unreachable_server_is_a_transient_error(clock: FixedClock) -> None:
    """Nothing listens on the port: the delivery loop will retry with the same event id."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = NatsSink(NatsOptions(urls=(f"nats://127.0.0.1:{port}",)), name="bus", timeout_seconds=5)

    with pytest.raises(TransientError, match="cannot connect"):
        _destination(down).deliver(_event(clock), _attempt())
    down.close()

    assert not down.is_running


class _SilentNats:
    """A server that speaks just enough NATS to accept a client, then never answers it."""

    INFO = b'INFO {"server_id":"silent","version":"2.10.0","proto":1,"headers":true}\r\n'

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"nats://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with suppress(OSError):
            conn, _ = self._listener.accept()
            with conn:
                conn.sendall(self.INFO)
                while data := conn.recv(65536):
                    if b"PING" in data:  # the handshake; requests get no reply
                        conn.sendall(b"PONG\r\n")

    def close(self) -> None:
        self._listener.close()


def test_a_server_that_never_acknowledges_is_a_transient_error(clock: FixedClock) -> None:
    silent = _SilentNats()
    sink = NatsSink(NatsOptions(urls=(silent.url,)), name="bus", timeout_seconds=1)

    with pytest.raises(TransientError, match="no acknowledgement within 1 s"):
        _destination(sink).deliver(_event(clock), _attempt())
    sink.close()
    silent.close()


def test_workspaces_and_event_types_become_valid_subject_tokens() -> None:
    options = NatsOptions(subject_prefix="acme.events")
    assert workspace_token("sandbox-acme") == "sandbox-acme"
    odd = workspace_token("a.b c>*")
    assert all(c.isalnum() or c in "_-" for c in odd)
    assert odd != workspace_token("a_b_c__")
    assert subject_for(options, "live", "invoice.paid") == "acme.events.live.invoice.paid"
    assert stream_name(options, "a.b") == f"SYNCHUB_{workspace_token('a.b')}"
    with pytest.raises(PermanentError):
        subject_for(options, "live", "invoice.>")
    assert subject_covers("acme.>", "acme.live.>")
    assert subject_covers("acme.*.>", "acme.live.>")
    assert not subject_covers("acme.live.*", "acme.live.>")
    assert not subject_covers("acme.other.>", "acme.live.>")


# -- through the register, the worker and the hub --------------------------------------------


def _register_with_bus(tmp_path: Path, bus: str) -> Path:
    target = tmp_path / "register"
    shutil.copytree(REPO / "register", target)
    with (target / "connections.yaml").open("a") as f:
        f.write("\n  bus:\n    system: nats\n    owner: platform@example.co.nz\n" + bus)
    with (target / "flows.yaml").open("a") as f:
        f.write(
            "\n  stripe-billing-to-bus:\n    source: stripe\n    destination: bus\n"
            "    events: [customer.created, invoice.paid]\n    owner: platform@example.co.nz\n"
        )
    return target


def _harness(db: Database, clock: FixedClock, tmp_path: Path, bus: str) -> Harness:
    register_dir = _register_with_bus(tmp_path, bus)
    return make_harness(db, clock, data_dir=tmp_path, register_dir=register_dir)


def _pay_an_invoice(harness: Harness) -> None:
    stripe = harness.boxes.stripe
    customer = stripe.create_customer(email="aroha@kowhai.nz", name="Aroha", currency="nzd")
    invoice = stripe.create_invoice(customer["id"], currency="nzd", lines=[("Pro", 1, 4900)])
    stripe.pay_invoice(invoice["id"])
    harness.deliver_stripe()


def test_stripe_events_reach_the_nats_stream_through_the_worker(
    db: Database, clock: FixedClock, tmp_path: Path, options: NatsOptions
) -> None:
    bus = (
        f"    mode: live\n    settings:\n      url: {NATS_URL}\n"
        f"      stream_prefix: {options.stream_prefix}\n"
        f"      subject_prefix: {options.subject_prefix}\n"
    )
    harness = _harness(db, clock, tmp_path, bus)
    try:
        _pay_an_invoice(harness)
        with db.read() as conn:
            sent = [d for d in list_deliveries(conn) if d["destination"] == "bus"]
        _, messages = _stream(NATS_URL, f"{options.stream_prefix}_live")

        assert [d["status"] for d in sent] == ["succeeded", "succeeded"]
        assert [(m.subject, m.headers["Nats-Msg-Id"]) for m in messages] == [
            (f"{options.subject_prefix}.live.{d['event_type']}", d["event_id"]) for d in sent
        ]
        assert json.loads(messages[1].data)["data"]["object"]["status"] == "paid"

        with db.write() as conn:  # replaying what succeeded publishes the same ids again
            events.replay(conn, workspace="live", where=events.DeliveryFilter(destination="bus"),
                          now=clock.now())  # fmt: skip
        harness.clock.advance(timedelta(seconds=1))
        harness.settle()
        _, after = _stream(NATS_URL, f"{options.stream_prefix}_live")
        with db.read() as conn:
            outcomes = [[a["outcome"] for a in attempts_of(conn, d["id"])] for d in sent]
        assert [sorted(o) for o in outcomes] == [["replayed", "succeeded", "succeeded"]] * 2
        assert len(after) == 2
    finally:
        harness.worker.stop()
        harness.http.close()
        harness.hub.close()
    assert not any(sink.is_running for sink in harness.hub.brokers if isinstance(sink, NatsSink))


def test_a_sandbox_bus_without_a_url_publishes_in_process(
    db: Database, clock: FixedClock, tmp_path: Path
) -> None:
    """The demo and tests need no NATS: sandbox mode without a url uses the memory broker."""
    harness = _harness(db, clock, tmp_path, "    mode: sandbox\n")
    try:
        _pay_an_invoice(harness)
        messages = harness.boxes.broker.messages("live")

        assert [m.topic for m in messages] == ["customer.created", "invoice.paid"]
        assert messages[0].key.startswith("cus_")  # one customer: one ordering key
        assert messages[1].key == messages[0].key
        assert json.loads(messages[0].body)["source"].startswith("/synchub/live/")
        assert harness.hub.brokers == []
    finally:
        harness.worker.stop()
        harness.http.close()
        harness.hub.close()


# -- the register ----------------------------------------------------------------------------


def test_a_nats_url_with_the_wrong_scheme_is_reported_with_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = "    mode: live\n    settings:\n      url: http://127.0.0.1:4222\n"
    register_dir = _register_with_bus(tmp_path, bus)
    monkeypatch.setenv("SYNCHUB_REGISTER_DIR", str(register_dir))

    result = CliRunner().invoke(app, ["register", "check"])

    assert result.exit_code == 1
    [line] = [x for x in result.output.splitlines() if "must start with nats://" in x]
    path, number = line.strip().split(":")[:2]
    assert path == str(register_dir / "connections.yaml")
    text = (register_dir / "connections.yaml").read_text().splitlines()[int(number) - 1]
    assert text.strip() == "url: http://127.0.0.1:4222"


def test_a_live_bus_needs_a_url_and_can_never_be_a_source(tmp_path: Path) -> None:
    register_dir = _register_with_bus(tmp_path, "    mode: live\n")
    flows = register_dir / "flows.yaml"
    flows.write_text(flows.read_text().replace("source: stripe\n    destination: bus",
                                               "source: bus\n    destination: xero"))  # fmt: skip
    with pytest.raises(RegisterError) as info:
        load_checked_register(Settings(register_dir=register_dir))

    problems = [str(p) for p in info.value.problems]
    assert any("connection 'bus': a live nats connection needs settings.url" in p for p in problems)
    assert any("'bus' is a broker sink; it cannot be a source" in p for p in problems)
