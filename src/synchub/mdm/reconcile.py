"""Reconciliation: what each system holds against the golden record, field by field. Pure.

A system's *view* of one golden record is the canonical fields it holds now (its vendor
words already translated by its connector). For each field the view holds, the value is
compared with the golden value after normalising both the same way (text in NFC, emails
trimmed and lower-cased, money as integer minor units, dates as calendar dates, instants in
UTC). A difference is drift, and who is right decides what repairs it:

- the field's *owner* is the register's owner, else the system the golden value last came
  from (its provenance: "most recent" survivorship), else nobody;
- the owner disagreeing with the golden record means the hub missed something: `observe`
  (apply the owner's view as an observation, through survivorship);
- any other system disagreeing is behind: `push` the golden (owner's) value to it through
  the outbox, when a flow carries that record there; else `report`;
- a terminal state never moves back: golden `canceled` against an owner's `active`, or a
  destination's `paid` against a golden `open`, is `report`ed for a person, never repaired.
A record missing at a system is drift of the whole record (field `*`): `push` creates it,
unless its delivery is a dead letter (`held`, with the reason: a person must act first).
A record a *source* no longer (or never) holds, with no flow to put it there, is not drift
at all: nothing can repair it (`orphaned`, e.g. from a hand-sent test webhook, or deleted
at the source without an event saying so); it is listed apart and fails nothing.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from synchub.core.entities import ENTITIES, Kind, is_entitled
from synchub.events.model import is_regression

WHOLE_RECORD = "*"

# Fields a system may hold that are derived from canonical ones: name -> (kind, derivation).
DERIVED: dict[str, dict[str, tuple[Kind, Callable[[dict[str, Any]], Any]]]] = {
    "customer": {"entitled": (Kind.BOOL, lambda g: is_entitled(g.get("billing_status")))},
}
# Fields whose empty value has a spelling of its own ("no billing status" is "none").
EMPTY_AS = {("customer", "billing_status"): "none"}


class Action(StrEnum):
    """What repairs one drifted field."""

    PUSH = "push"  # the system is behind: send it the golden value through the outbox
    OBSERVE = "observe"  # the golden record is behind its owner: apply the owner's view
    REPORT = "report"  # cannot be repaired automatically: a person must look
    HELD = "held"  # missing at the system while its delivery is a dead letter
    ORPHANED = "orphaned"  # missing at a source that no flow reaches: not repairable drift


# Actions that are not drift: listed apart, never counted as drift nor failing a run.
NOT_DRIFT = frozenset({Action.HELD, Action.ORPHANED})
ORPHANED_HINT = (
    "not drift: no flow can put these records back at their source, so there is nothing to "
    "repair and they do not fail the run. Usually a hand-sent or test webhook for a record the "
    "source never had, or a record deleted at the source without a webhook saying so."
)


REPAIRABLE = frozenset({Action.PUSH, Action.OBSERVE})


@dataclass(frozen=True)
class View:
    """What one system holds now for one golden record (`fields` None: it holds nothing)."""

    system: str
    entity: str
    canonical_id: str
    external_id: str | None
    fields: dict[str, Any] | None
    can_push: bool = False  # a flow carries this record's repair event to the system
    can_observe: bool = False  # the hub can read this view as an observation (a source)
    dead_letter: str | None = None  # why the last delivery of this record there died


@dataclass(frozen=True)
class Drift:
    """One field (or the whole record, `*`) on which a system and the golden record differ."""

    entity: str
    record_id: str
    customer_id: str | None
    system: str
    external_id: str | None
    field: str
    golden: Any
    value: Any
    owner: str | None
    action: Action
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """Plain data (the --json and API shape); values stay as compared."""
        data = asdict(self)
        data["action"] = str(self.action)
        return data


@dataclass
class Comparison:
    """Drift found in a set of views, and how much was compared."""

    drift: list[Drift] = field(default_factory=list)
    records: int = 0
    fields: int = 0

    def extend(self, other: Comparison) -> None:
        """Add another comparison's findings."""
        self.drift += other.drift
        self.records += other.records
        self.fields += other.fields


def _kind(entity: str, name: str) -> Kind | None:
    for spec in ENTITIES.get(entity, ()):
        if spec.name == name:
            return spec.kind
    derived = DERIVED.get(entity, {}).get(name)
    return derived[0] if derived else None


def normalise(kind: Kind | None, value: Any) -> Any:
    """One spelling per value, so equal things compare equal and different things do not.

    Money and counts must already be integers (minor units): a float is refused, never
    rounded. Dates stay calendar dates; instants become aware UTC datetimes.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if kind is Kind.INT:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected an integer (minor units), got {type(value).__name__}")
        return value
    if kind is Kind.BOOL:
        if isinstance(value, str):
            return value.strip().lower() == "true"
        return bool(value)
    if kind is Kind.DATE:
        if isinstance(value, datetime):
            raise TypeError("a calendar date was expected, not an instant")
        return value if isinstance(value, date) else date.fromisoformat(str(value).strip())
    if kind is Kind.DATETIME:
        text = "" if isinstance(value, datetime) else str(value).strip().replace("Z", "+00:00")
        instant = value if isinstance(value, datetime) else datetime.fromisoformat(text)
        if instant.tzinfo is None:
            raise TypeError("an instant without a time zone cannot be compared")
        return instant.astimezone(UTC)
    if kind is Kind.EMAIL:
        return unicodedata.normalize("NFC", str(value)).strip().lower()
    if kind is Kind.CURRENCY:
        return str(value).strip().upper()
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value).strip()
    return value


def golden_value(entity: str, golden: dict[str, Any], name: str) -> Any:
    """The golden record's value of a canonical or derived field."""
    derived = DERIVED.get(entity, {}).get(name)
    return derived[1](golden) if derived else golden.get(name)


def same(entity: str, name: str, left: Any, right: Any) -> bool:
    """Whether two values of one field are the same once normalised."""
    kind = _kind(entity, name)
    a, b = normalise(kind, left), normalise(kind, right)
    empty = EMPTY_AS.get((entity, name))
    if empty is not None:
        a, b = (empty if a is None else a), (empty if b is None else b)
    return bool(a == b)


def owner_for(
    entity: str,
    name: str,
    *,
    owner_of: Callable[[str, str], str | None],
    provenance: dict[str, str],
) -> str | None:
    """Who is right about a field: the register's owner, else where the golden value came from."""
    source_field = "billing_status" if (entity, name) == ("customer", "entitled") else name
    return owner_of(entity, source_field) or provenance.get(source_field)


def compare(
    golden: dict[str, Any],
    view: View,
    *,
    owner_of: Callable[[str, str], str | None],
    provenance: dict[str, str],
) -> Comparison:
    """The drift between one golden record and one system's view of it.

    `provenance` maps each golden field to the system its value came from.
    """
    entity, result = view.entity, Comparison(records=1)
    customer_id = golden["id"] if entity == "customer" else golden.get("customer_id")

    def drift(name: str, golden_v: Any, value: Any, owner: str | None, action: Action,
              reason: str) -> Drift:  # fmt: skip
        return Drift(entity, golden["id"], customer_id, view.system, view.external_id, name,
                     golden_v, value, owner, action, reason)  # fmt: skip

    if view.fields is None:
        result.fields += 1
        if view.dead_letter is not None:
            action, reason = Action.HELD, f"its delivery is a dead letter: {view.dead_letter}"
        elif view.can_push:
            action, reason = Action.PUSH, f"{view.system} holds no such record"
        elif view.can_observe:
            reason = f"{view.system}, a source, holds no such record; no flow carries it there"
            action = Action.ORPHANED
        else:
            action, reason = Action.REPORT, f"{view.system} holds no such record; no flow to it"
        result.drift.append(drift(WHOLE_RECORD, golden["id"], None, None, action, reason))
        return result
    for name, value in view.fields.items():
        result.fields += 1
        expected = golden_value(entity, golden, name)
        if same(entity, name, expected, value):
            continue
        owner = owner_for(entity, name, owner_of=owner_of, provenance=provenance)
        action, reason = _decide(entity, name, view, owner, expected, value)
        result.drift.append(drift(name, expected, value, owner, action, reason))
    return result


def _decide(
    entity: str, name: str, view: View, owner: str | None, expected: Any, value: Any
) -> tuple[Action, str]:
    if owner == view.system:
        if name == "status" and is_regression(entity, expected, value):
            return Action.REPORT, (
                f"the golden record is {expected} (terminal); {owner}, the owner, says {value}: "
                "a terminal state never moves back, a person must look"
            )
        if not view.can_observe:
            return Action.REPORT, f"{owner} owns this field but is no source the hub reads"
        return Action.OBSERVE, f"the golden record is behind {owner}, the owner"
    if name == "status" and is_regression(entity, value, expected):
        return Action.REPORT, (
            f"{view.system} says {value} (terminal) but the golden record is {expected}: "
            "a terminal state cannot be pushed back, a person must look"
        )
    who = f"{owner}, the owner," if owner else "the golden record"
    if view.can_push:
        return Action.PUSH, f"{view.system} is behind {who} says {expected!r}"
    return Action.REPORT, f"{view.system} is behind; no flow carries this record to it"


def status_words(views: Iterable[View], names: dict[str, str] | None = None) -> str:
    """A customer's standing in each system, in plain words: "active in Stripe, canceled in
    HubSpot, not in Xero". `names` spells system names (default: the connection name)."""
    names = names or {}
    words = []
    for view in views:
        label = names.get(view.system, view.system)
        if view.fields is None:
            words.append(f"not in {label}")
        elif "billing_status" in view.fields:
            words.append(f"{view.fields['billing_status'] or 'no billing'} in {label}")
        elif "entitled" in view.fields:
            words.append(f"{'unlocked' if view.fields['entitled'] else 'locked'} in {label}")
        elif "status" in view.fields:
            words.append(f"{view.fields['status']} in {label}")
    return ", ".join(words)
