"""The broker sink role and the Destination that puts canonical events on any broker (ADR 0010).

A BrokerSink publishes one BrokerMessage and returns only once the broker has durably
accepted it: a JetStream PubAck here; a Kafka ack with acks=all, a RabbitMQ publisher
confirm, an SQS or Pub/Sub publish response for the brokers that come later. It raises
TransientError whenever that is not known (no acknowledgement, a timeout, a lost
connection): the delivery loop then retries with the same message id, which the broker (or,
past its de-duplication window, the consumer) drops as a duplicate. It raises PermanentError
when retrying cannot help (e.g. the subject cannot be bound to a stream).

Every message is one CloudEvents 1.0 event in structured mode: the body is the JSON event
format (`application/cloudevents+json`), as the NATS protocol binding requires and as
STANDARDS.md §4 prescribes for the internal envelope. `Content-Type` and the W3C
`traceparent` also travel as headers, so consumers can continue the trace without parsing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from synchub.connectors.base import Attempt, Delivered, OutboundEvent
from synchub.core.clock import isoformat_z
from synchub.core.errors import PermanentError

CLOUDEVENTS_JSON = "application/cloudevents+json; charset=utf-8"


@dataclass(frozen=True)
class BrokerMessage:
    """One message for a broker: where it goes, its stable id, headers and body bytes."""

    id: str  # the canonical event id: the same on every retry and replay, so brokers dedupe
    workspace: str  # whose stream (NATS), topic or exchange (later brokers) it belongs in
    topic: str  # the event type, dot-separated (`invoice.paid`); each sink maps it to a subject
    key: str  # the ordering key (the customer): Kafka record key, SQS FIFO group, Pub/Sub key
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PublishReceipt:
    """The broker's acknowledgement of one message."""

    address: str  # where the message now is, in the broker's words (stream and sequence)
    duplicate: bool = False  # the broker already held this id and did not store it again


class BrokerSink(Protocol):
    """Publishes messages to one broker and waits for each to be durably accepted."""

    system: str

    def publish(self, message: BrokerMessage) -> PublishReceipt:
        """Publish and wait for the acknowledgement, or raise TransientError/PermanentError."""
        ...

    def close(self) -> None:
        """Release connections and threads; publishing again reopens them."""
        ...


@dataclass(frozen=True)
class EventOrigin:
    """What the outbox knows about an event beyond OutboundEvent: its workspace and envelope."""

    workspace: str
    source: str  # CloudEvents source, /synchub/{workspace}/{connection}
    dataschema: str | None
    aggregate_id: str  # the entity whose events stay in order (the customer)


OriginLookup = Callable[[str], "EventOrigin | None"]  # event id -> its origin, None if unknown


def cloudevent(event: OutboundEvent, origin: EventOrigin) -> dict[str, Any]:
    """The event as a CloudEvents 1.0 JSON object (STANDARDS.md §4 attributes)."""
    attributes: dict[str, Any] = {
        "specversion": "1.0",
        "id": event.id,
        "source": origin.source,
        "type": event.type,
        "subject": event.subject,
        "time": isoformat_z(event.time),
        "datacontenttype": "application/json",
    }
    if origin.dataschema:
        attributes["dataschema"] = origin.dataschema
    if event.traceparent:
        attributes["traceparent"] = event.traceparent
    return {**attributes, "data": event.payload}


def to_message(event: OutboundEvent, origin: EventOrigin) -> BrokerMessage:
    """The broker message for an event: the same bytes and headers on every attempt."""
    body = json.dumps(
        cloudevent(event, origin), ensure_ascii=False, separators=(",", ":"), sort_keys=True
    ).encode()
    headers = {"Content-Type": CLOUDEVENTS_JSON}
    if event.traceparent:
        headers["traceparent"] = event.traceparent
    return BrokerMessage(
        id=event.id,
        workspace=origin.workspace,
        topic=event.type,
        key=origin.aggregate_id,
        body=body,
        headers=headers,
    )


class BrokerDestination:
    """Delivers canonical events by publishing them to a broker sink."""

    def __init__(self, name: str, sink: BrokerSink, *, origin_of: OriginLookup) -> None:
        self.name = name
        self.sink = sink
        self._origin_of = origin_of

    def deliver(self, event: OutboundEvent, attempt: Attempt) -> Delivered:
        """Publish the event; return once the broker acknowledged it (a duplicate counts)."""
        origin = self._origin_of(event.id)
        if origin is None:
            raise PermanentError(f"event {event.id} is missing from the outbox")
        receipt = self.sink.publish(to_message(event, origin))
        again = " (already there: the broker dropped the duplicate)" if receipt.duplicate else ""
        return Delivered(summary=f"published {event.type} to {receipt.address}{again}")
