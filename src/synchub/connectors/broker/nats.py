"""Publishing canonical events to NATS JetStream (ADR 0010).

One stream per workspace, created or adjusted on its first publish after each connect; one
subject per event type; `Nats-Msg-Id` = the canonical event id, so JetStream drops a
re-publish within the stream's duplicate window. A publish returns only after the PubAck.

nats-py is asyncio-only and synchub is synchronous, so each sink runs one event loop on a
background thread of its own (started on the first publish, stopped by close()); delivery
threads hand it coroutines and wait for the result. The connection lives on that loop and
reconnects by itself; while it is reconnecting a publish fails fast as a TransientError.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Coroutine
from concurrent.futures import CancelledError
from contextlib import suppress
from typing import Any, TypeVar

import nats.errors
import structlog
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import APIError, BadRequestError, NoStreamResponseError, NotFoundError

from synchub.connectors.broker.base import BrokerMessage, PublishReceipt
from synchub.connectors.broker.model import (
    NatsOptions,
    stream_name,
    stream_subjects,
    subject_covers,
    subject_for,
)
from synchub.core.errors import ConfigError, HubError, PermanentError, TransientError

log = structlog.get_logger(__name__)
T = TypeVar("T")

STREAM_NAME_IN_USE = 10058  # JetStream: the stream exists with another configuration
_CLOSE_SECONDS = 5.0
_GRACE_SECONDS = 2.0  # past the sink's own deadline, before a caller stops waiting


class NatsSink:
    """A BrokerSink on one NATS server (or cluster) with JetStream."""

    system = "nats"

    def __init__(self, options: NatsOptions, *, name: str, timeout_seconds: float = 15.0) -> None:
        if not options.urls:
            raise ConfigError(f"nats connection {name!r} has no url")
        self.options = options
        self.name = name
        self.timeout_seconds = timeout_seconds
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        # Used only on the loop's thread:
        self._nc: NatsClient | None = None
        self._connecting = asyncio.Lock()
        self._ready: set[str] = set()  # streams configured since the last (re)connect
        self._last_error: str | None = None

    # -- the synchronous face ---------------------------------------------------------------

    def publish(self, message: BrokerMessage) -> PublishReceipt:
        """Publish and wait for JetStream's PubAck; TransientError/PermanentError otherwise."""
        return self._run(self._publish(message))

    def close(self) -> None:
        """Close the connection and stop the loop's thread; publishing again restarts both."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        with suppress(TimeoutError):
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(_CLOSE_SECONDS)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_CLOSE_SECONDS)
        if not thread.is_alive():
            loop.close()

    @property
    def is_running(self) -> bool:
        """Whether the sink's event-loop thread is alive."""
        with self._lock:
            return self._thread is not None and self._thread.is_alive()

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._running_loop())
        try:
            return future.result(self.timeout_seconds + _GRACE_SECONDS)
        except TimeoutError as exc:  # the loop is stuck or stopping: the outcome is unknown
            future.cancel()
            raise TransientError(f"nats: no answer within {self.timeout_seconds:g} s") from exc
        except CancelledError as exc:  # close() ran meanwhile: the outcome is unknown
            raise TransientError("nats: the sink closed while publishing") from exc

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._nc, self._connecting, self._ready = None, asyncio.Lock(), set()
                thread = threading.Thread(
                    target=loop.run_forever, name=f"synchub-nats-{self.name}", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    # -- on the loop ------------------------------------------------------------------------

    async def _publish(self, message: BrokerMessage) -> PublishReceipt:
        try:
            async with asyncio.timeout(self.timeout_seconds):
                return await self._publish_now(message)
        except HubError:
            raise
        except TimeoutError as exc:
            raise TransientError(
                f"nats: no acknowledgement within {self.timeout_seconds:g} s{self._context()}"
            ) from exc
        except (nats.errors.Error, OSError) as exc:
            raise _translate(exc, "publishing") from exc

    async def _publish_now(self, message: BrokerMessage) -> PublishReceipt:
        subject = subject_for(self.options, message.workspace, message.topic)
        stream = stream_name(self.options, message.workspace)
        nc = await self._connection()
        js = nc.jetstream(timeout=self.timeout_seconds)
        if stream not in self._ready:
            await self._ensure_stream(js, message.workspace)
            self._ready.add(stream)
        headers = {**message.headers, "Nats-Msg-Id": message.id}
        try:
            ack = await js.publish(
                subject, message.body, timeout=self.timeout_seconds, stream=stream, headers=headers
            )
        except NoStreamResponseError as exc:
            self._ready.discard(stream)  # deleted under us: configure it again next attempt
            raise TransientError(f"nats: no JetStream stream answered on {subject}") from exc
        except APIError as exc:
            raise _translate(exc, f"publishing on {subject}") from exc
        address = f"nats stream {ack.stream} seq {ack.seq}"
        return PublishReceipt(address=address, duplicate=bool(ack.duplicate))

    async def _connection(self) -> NatsClient:
        async with self._connecting:
            nc = self._nc
            if nc is not None and not nc.is_closed:
                if nc.is_reconnecting:
                    raise TransientError(f"nats: reconnecting{self._context()}")
                return nc
            self._nc = await self._connect()
            self._ready.clear()
            return self._nc

    async def _connect(self) -> NatsClient:
        """Connect, failing as soon as every server has refused once (the delivery loop,
        not nats-py, decides when to try again); afterwards nats-py reconnects on its own."""
        nc = NatsClient()
        gave_up: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        failures = 0

        async def on_error(exc: Exception) -> None:
            nonlocal failures
            self._last_error = _describe(exc)
            failures += 1
            if not gave_up.done() and failures >= len(self.options.urls):
                gave_up.set_result(None)
            elif gave_up.cancelled():  # connected earlier: a runtime or reconnect error
                log.info("broker.nats_error", connection=self.name, error=self._last_error)

        connecting = asyncio.ensure_future(
            nc.connect(
                servers=list(self.options.urls),
                name=f"synchub {self.name}",
                connect_timeout=max(1, round(self.timeout_seconds)),
                max_reconnect_attempts=-1,
                error_cb=on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
                user_credentials=self.options.creds_file,
            )
        )
        connected = False
        try:
            await asyncio.wait({connecting, gave_up}, return_when=asyncio.FIRST_COMPLETED)
            if not connecting.done():
                raise TransientError(f"nats: cannot connect{self._context()}")
            connecting.result()
            connected = True
            gave_up.cancel()
            url = nc.connected_url
            where = f"{url.scheme}://{url.hostname}:{url.port}" if url else None
            log.info("broker.nats_connected", connection=self.name, url=where)
            return nc
        except (nats.errors.Error, OSError) as exc:
            raise TransientError(f"nats: cannot connect: {_describe(exc)}") from exc
        finally:
            if not connected:
                gave_up.cancel()
                await _abandon(connecting, nc)

    async def _on_disconnected(self) -> None:
        if self._nc is None:  # our own close, or an attempt that never connected
            return
        log.warning("broker.nats_disconnected", connection=self.name, error=self._last_error)

    async def _on_reconnected(self) -> None:
        self._ready.clear()  # perhaps another server, or one that lost its streams
        log.info("broker.nats_reconnected", connection=self.name)

    async def _ensure_stream(self, js: JetStreamContext, workspace: str) -> None:
        """Create the workspace's stream, or bind our subjects and settings to the existing one.

        The register owns the subjects, duplicate window and max age; anything else an
        operator changed on the stream (replicas, limits, placement) is kept.
        """
        name = stream_name(self.options, workspace)
        wanted = stream_subjects(self.options, workspace)
        try:
            config: StreamConfig | None
            try:
                config = (await js.stream_info(name)).config
            except NotFoundError:
                config = await self._create_stream(js, name, wanted, workspace)
            if config is not None:
                await self._adjust_stream(js, config, wanted)
        except BadRequestError as exc:
            raise PermanentError(
                f"nats: cannot bind {wanted} to JetStream stream {name}: {exc.description} "
                f"(JetStream error {exc.err_code})"
            ) from exc
        except (nats.errors.Error, OSError) as exc:
            raise _translate(exc, f"configuring JetStream stream {name}") from exc

    async def _create_stream(
        self, js: JetStreamContext, name: str, wanted: str, workspace: str
    ) -> StreamConfig | None:
        """Create the stream; the existing config when another process created it first."""
        config = StreamConfig(
            name=name,
            description=f"synchub canonical events of workspace {workspace!r} (ADR 0010)",
            subjects=[wanted],
            storage=StorageType.FILE,
            duplicate_window=self.options.duplicate_window_seconds,
            max_age=self.options.max_age_seconds,
        )
        try:
            await js.add_stream(config)
        except BadRequestError as exc:
            if exc.err_code != STREAM_NAME_IN_USE:
                raise
            return (await js.stream_info(name)).config
        log.info("broker.stream_created", connection=self.name, stream=name, subjects=wanted)
        return None

    async def _adjust_stream(self, js: JetStreamContext, config: StreamConfig, wanted: str) -> None:
        subjects = list(config.subjects or [])
        changes: dict[str, Any] = {}
        if not any(subject_covers(s, wanted) for s in subjects):
            changes["subjects"] = [*subjects, wanted]
        if not math.isclose(config.duplicate_window, self.options.duplicate_window_seconds):
            changes["duplicate_window"] = self.options.duplicate_window_seconds
        if not math.isclose(config.max_age or 0.0, self.options.max_age_seconds):
            changes["max_age"] = self.options.max_age_seconds
        if changes:
            await js.update_stream(config.evolve(**changes))
            log.info("broker.stream_updated", connection=self.name, stream=config.name,
                     changed=sorted(changes))  # fmt: skip

    async def _shutdown(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None and not nc.is_closed:
            with suppress(nats.errors.Error, OSError, TimeoutError):
                await nc.close()
        current = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.get_running_loop().shutdown_default_executor()  # DNS lookups ran there

    def _context(self) -> str:
        return f" (last error: {self._last_error})" if self._last_error else ""


async def _abandon(connecting: asyncio.Future[Any], nc: NatsClient) -> None:
    """Stop a connection attempt and release whatever it opened."""
    connecting.cancel()
    with suppress(asyncio.CancelledError, nats.errors.Error, OSError, TimeoutError):
        await connecting
    with suppress(nats.errors.Error, OSError, TimeoutError):
        await nc.close()


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _translate(exc: Exception, doing: str) -> HubError:
    """One NATS failure in the error tree: retry only what a retry can fix."""
    if isinstance(exc, APIError):
        detail = f"nats: {doing}: {exc.description} (JetStream error {exc.err_code})"
        if exc.code is not None and exc.code >= 500:
            return TransientError(detail)
        return PermanentError(detail)
    if isinstance(exc, nats.errors.MaxPayloadError):
        return PermanentError(f"nats: {doing}: the event is larger than the server's max_payload")
    if isinstance(exc, nats.errors.BadSubjectError | nats.errors.BadHeaderError):
        return PermanentError(f"nats: {doing}: {_describe(exc)}")
    if isinstance(exc, nats.errors.NoRespondersError):
        return TransientError(f"nats: {doing}: JetStream did not answer (is it enabled?)")
    return TransientError(f"nats: {doing}: {_describe(exc)}")
