"""Survivorship: which value of a field wins, and when a disagreement is a conflict. Pure."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

OwnerOf = Callable[[str, str], str | None]


@dataclass(frozen=True)
class Provenance:
    """Where a golden field's current value came from."""

    system: str
    source_version: int


@dataclass(frozen=True)
class Conflict:
    """A non-owner said something different from what the owner said."""

    field: str
    owner: str
    owner_value: Any
    other_system: str
    other_value: Any


@dataclass
class Decision:
    """The outcome of survivorship for one observation."""

    changes: dict[str, Any] = field(default_factory=dict)
    conflicts: list[Conflict] = field(default_factory=list)
    # Fields whose value the observation repeats and whose provenance moves to it (the owner
    # speaking, or a more recent source saying the same thing).
    confirmed: list[str] = field(default_factory=list)


def survive(
    entity: str,
    current: dict[str, Any] | None,
    proposed: dict[str, Any],
    *,
    source: str,
    source_version: int,
    provenance: dict[str, Provenance],
    owner_of: OwnerOf,
) -> Decision:
    """Decide, field by field, which proposed values enter the golden record.

    - The owner of a field always wins, including when it clears the value or repeats it;
      once the owner has spoken (even to say "none"), no other source changes the field, and
      a different value from a non-owner is a conflict (not applied) when the owner has one.
    - Fields without an owner, and owned fields the owner has not spoken for, take the most
      recent value by the sources' own versions; equal versions from different systems are
      decided by the system's name, so that arrival order does not decide. A source that says
      nothing (None) clears only a value it gave itself: one that does not carry a field
      never wipes another source's value.
    - A source repeating the current value at a newer version takes over its provenance
      (`confirmed`), so that later comparisons are made against its version.

    The result depends on what the sources said, not on the order it arrived in, with one
    exception by design: the hub keeps only the winning value, so a source clearing its own
    value cannot bring back an older value from another source (see
    tests/integration/test_order_independence.py).
    """
    decision = Decision()
    for name, value in proposed.items():
        existing = current.get(name) if current else None
        owner = owner_of(entity, name)
        prov = provenance.get(name)
        if owner == source:
            pass  # the owner has the final say
        elif owner is not None and prov is not None and prov.system == owner:
            if value is not None and existing is not None and value != existing:
                decision.conflicts.append(Conflict(name, owner, existing, source, value))
            continue
        elif _says_nothing_new(value, existing, prov, source) or _is_older(
            prov, source, source_version
        ):
            continue
        if value != existing:
            decision.changes[name] = value
        elif (existing is not None or owner == source) and prov != Provenance(
            source, source_version
        ):
            decision.confirmed.append(name)
    return decision


def _says_nothing_new(value: Any, existing: Any, prov: Provenance | None, source: str) -> bool:
    """A None that clears nothing: the field is empty, or its value is another source's."""
    return value is None and (existing is None or prov is None or prov.system != source)


def _is_older(prov: Provenance | None, source: str, source_version: int) -> bool:
    """Whether the field's current value is more recent than (version, system) says."""
    return prov is not None and (prov.source_version, prov.system) > (source_version, source)


def _json_default(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def canonical_json(value: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces) for hashing and fingerprints."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), default=_json_default, ensure_ascii=False
    )


def content_hash(value: Any) -> str:
    """SHA-256 of the canonical JSON of a value."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()
