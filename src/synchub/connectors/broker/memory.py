"""An in-process broker: what a sandbox-mode nats connection without a URL publishes to.

It behaves like JetStream where a caller can tell: one stream per workspace, a message id
stored once (a repeat is acknowledged as a duplicate and not stored again), and every
publish acknowledged with the stream and sequence. Its state lives as long as the process,
like the vendor sandboxes' (ADR 0002, ADR 0010).
"""

from __future__ import annotations

import threading

from synchub.connectors.broker.base import BrokerMessage, PublishReceipt


class MemoryBroker:
    """Streams of messages per workspace, kept in memory, de-duplicated by message id."""

    system = "memory"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: dict[str, list[BrokerMessage]] = {}
        self._sequence_of: dict[tuple[str, str], int] = {}  # (workspace, message id) -> seq

    def publish(self, message: BrokerMessage) -> PublishReceipt:
        """Store the message unless its id is already in the workspace's stream."""
        key = (message.workspace, message.id)
        with self._lock:
            stream = self._streams.setdefault(message.workspace, [])
            duplicate = key in self._sequence_of
            if not duplicate:
                stream.append(message)
                self._sequence_of[key] = len(stream)
            sequence = self._sequence_of[key]
        address = f"in-process stream {message.workspace!r} seq {sequence}"
        return PublishReceipt(address=address, duplicate=duplicate)

    def messages(self, workspace: str) -> list[BrokerMessage]:
        """A workspace's stream, oldest first."""
        with self._lock:
            return list(self._streams.get(workspace, []))

    def close(self) -> None:
        """Nothing to release; the messages stay readable."""
