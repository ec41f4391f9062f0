"""Reading Intercom: contacts pulled incrementally through search, and contact notifications.

The pull asks `POST /contacts/search` for `updated_at > T - 1` (date fields take only `=`,
`<` and `>`), sorted by `updated_at` ascending, page after page with `starting_after`. Many
contacts can share one second and Intercom does not order those by id, so one (second, id)
pair cannot mark a place among them: the cursor is the second `T` and the ids already read
at `T` (`ContactCursor`). A contact is taken when it is newer than `T`, or at `T` and not yet
read; every page moves the cursor, which is saved once the page is committed. Resuming
re-asks from `T` and skips what was read: nothing skipped, nothing taken twice. A contact
changed again later comes back with its new `updated_at` (a new version, not a repeat).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from synchub.connectors.intercom.client import MAX_PER_PAGE, IntercomClient
from synchub.connectors.intercom.webhooks import DELETING_TOPICS, parse_notification
from synchub.core.errors import RejectedError, ValidationError
from synchub.db import Database
from synchub.ingest.service import record_inbound_event
from synchub.mapping.model import MappingVersion, Observation, map_object

PULLED_EVENT = "contact.pulled"  # inbox event type of a contact read by the pull


@dataclass(frozen=True)
class ContactCursor:
    """Where a contact pull stands: every contact updated before `updated_at` (Unix seconds)
    was read, and those updated at `updated_at` whose ids are in `seen`. Pure."""

    updated_at: int = 0
    seen: frozenset[str] = frozenset()

    def admits(self, contact: dict[str, Any]) -> bool:
        """Whether a contact is still to be read."""
        stamp = int(contact["updated_at"])
        return stamp > self.updated_at or (
            stamp == self.updated_at and str(contact["id"]) not in self.seen
        )

    def advance(self, contact: dict[str, Any]) -> ContactCursor:
        """The cursor once this (admitted) contact is read."""
        stamp, contact_id = int(contact["updated_at"]), str(contact["id"])
        if stamp > self.updated_at:
            return ContactCursor(stamp, frozenset({contact_id}))
        if stamp == self.updated_at:
            return ContactCursor(stamp, self.seen | {contact_id})
        return self

    def query(self, *, until: int | None = None) -> dict[str, Any]:
        """The search query for contacts at or after the cursor's second (before `until`)."""
        since = {"field": "updated_at", "operator": ">", "value": self.updated_at - 1}
        if until is None:
            return since
        before = {"field": "updated_at", "operator": "<", "value": until}
        return {"operator": "AND", "value": [since, before]}

    def to_json(self) -> dict[str, Any]:
        """The cursor as JSON-able data."""
        return {"updated_at": self.updated_at, "seen": sorted(self.seen)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ContactCursor:
        """A cursor written by `to_json`."""
        return cls(int(data["updated_at"]), frozenset(str(i) for i in data["seen"]))


Contacts = list[dict[str, Any]]


def take(cursor: ContactCursor, contacts: Contacts) -> tuple[Contacts, ContactCursor]:
    """The contacts of one page still to be read, and the cursor after them. Pure."""
    fresh = []
    for contact in contacts:
        if cursor.admits(contact):
            fresh.append(contact)
            cursor = cursor.advance(contact)
    return fresh, cursor


class ContactPull:
    """Pages of contacts changed since a cursor, each with the cursor after it."""

    def __init__(self, client: IntercomClient, *, per_page: int = MAX_PER_PAGE) -> None:
        self._client = client
        self._per_page = per_page

    def pages(
        self, cursor: ContactCursor, *, until: int | None = None, max_pages: int | None = None
    ) -> Iterator[tuple[list[dict[str, Any]], ContactCursor]]:
        """Yield (new contacts, cursor after them) per page until search has no next page.
        `until` (Unix seconds, exclusive) leaves recent changes for a later pull, as the
        search index can lag."""
        query = cursor.query(until=until)
        sort = {"field": "updated_at", "order": "ascending"}
        starting_after: str | None = None
        count = 0
        while max_pages is None or count < max_pages:
            page = self._client.search_contacts(
                query, per_page=self._per_page, starting_after=starting_after, sort=sort
            )
            count += 1
            fresh, cursor = take(cursor, list(page.get("data") or []))
            yield fresh, cursor
            starting_after = ((page.get("pages") or {}).get("next") or {}).get("starting_after")
            if not starting_after or not page.get("data"):
                return


class CursorStore(Protocol):
    """Where a pull keeps its cursor between runs."""

    def load(self) -> ContactCursor:
        """The saved cursor (the start when none)."""
        ...

    def save(self, cursor: ContactCursor) -> None:
        """Keep the cursor."""
        ...


class FileCursorStore:
    """A cursor kept in a JSON file, replaced atomically (a reader never sees half of it)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> ContactCursor:
        """The saved cursor (the start when no file)."""
        if not self.path.exists():
            return ContactCursor()
        return ContactCursor.from_json(json.loads(self.path.read_text(encoding="utf-8")))

    def save(self, cursor: ContactCursor) -> None:
        """Write the cursor: a temporary file, then a rename."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=".cursor.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(cursor.to_json(), out)
            os.replace(temp, self.path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise


@dataclass
class PullResult:
    """What one pull run did."""

    pages: int = 0
    contacts: int = 0  # contacts taken from the pages
    recorded: int = 0  # of those, new in the inbox (a page re-read after a crash adds none)
    cursor: ContactCursor = field(default_factory=ContactCursor)


def pull_contacts(
    db: Database,
    pull: ContactPull,
    store: CursorStore,
    *,
    workspace: str,
    source: str,
    now: datetime,
    until: int | None = None,
    max_pages: int | None = None,
) -> PullResult:
    """Pull changed contacts into the inbox (one transaction per page; the worker maps them),
    saving the cursor after each committed page. Resumable: run it again after a crash."""
    result = PullResult(cursor=store.load())
    for fresh, cursor in pull.pages(result.cursor, until=until, max_pages=max_pages):
        with db.write() as conn:
            for contact in fresh:
                result.recorded += record_inbound_event(
                    conn, workspace=workspace, source=source,
                    external_id=f"contact:{contact['id']}:{contact['updated_at']}",
                    event_type=PULLED_EVENT, body=json.dumps(contact).encode(), headers={},
                    traceparent=None, now=now,
                )  # fmt: skip
        store.save(cursor)
        result.pages += 1
        result.contacts += len(fresh)
        result.cursor = cursor
    return result


class IntercomReader:
    """The SourceReader for one Intercom connection: pulled contacts and notifications."""

    def __init__(
        self, *, source: str, mapping: MappingVersion, client: IntercomClient | None = None
    ) -> None:
        self.source = source
        self.mapping = mapping
        self._client = client
        self.can_fetch = client is not None

    def _observe(
        self, contact: dict[str, Any], *, observed_at: datetime, deleted: bool = False
    ) -> list[Observation]:
        stamp = contact.get("updated_at") or contact.get("created_at") or 0
        return map_object(self.mapping, "contact", contact, source=self.source,
                          source_version=int(stamp) * 1000, observed_at=observed_at,
                          deleted=deleted)  # fmt: skip

    def read_event(self, body: bytes, *, observed_at: datetime) -> list[Observation]:
        """Observations in a pulled contact or a contact notification ([] for other topics)."""
        try:
            raw = json.loads(body)
        except ValueError as exc:
            raise ValidationError("an Intercom event is not JSON") from exc
        if isinstance(raw, dict) and raw.get("type") == "contact":
            return self._observe(raw, observed_at=observed_at)
        note = parse_notification(body)
        if not note.is_contact_change:
            return []
        deleted = note.topic in DELETING_TOPICS
        item = dict(note.item)
        if deleted and not item.get("updated_at"):
            item["updated_at"] = note.created_at  # a deletion carries ids only
        return self._observe(item, observed_at=observed_at, deleted=deleted)

    def fetch(self, entity: str, external_id: str, *, observed_at: datetime) -> list[Observation]:
        """Read one contact now."""
        if self._client is None or entity != "customer":
            raise RejectedError(f"this Intercom connection cannot fetch {entity}")
        return self._observe(self._client.get_contact(external_id), observed_at=observed_at)
