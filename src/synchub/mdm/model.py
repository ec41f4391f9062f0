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

    - The owner of a field always wins, including when it clears the value.
    - A non-owner fills a field the owner has not spoken for; if the owner has a value and the
      non-owner disagrees, that is a conflict and the value is not applied.
    - Fields without an owner take the most recent value by the sources' own versions.
    """
    decision = Decision()
    for name, value in proposed.items():
        existing = current.get(name) if current else None
        if value == existing:
            continue
        owner = owner_of(entity, name)
        prov = provenance.get(name)
        if owner is None or owner == source:
            if owner is None and _is_older(prov, source, source_version):
                continue
            if (
                owner is None
                and value is None
                and existing is not None
                and prov is not None
                and prov.system != source
            ):
                continue
            decision.changes[name] = value
        elif prov is not None and prov.system == owner and existing is not None:
            if value is not None:
                decision.conflicts.append(Conflict(name, owner, existing, source, value))
        elif value is not None:
            decision.changes[name] = value
    return decision


def _is_older(prov: Provenance | None, source: str, source_version: int) -> bool:
    return prov is not None and prov.system != source and prov.source_version > source_version


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
