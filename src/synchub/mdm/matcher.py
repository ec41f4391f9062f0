"""The match step for a new source record (DESIGN §4, ADR 0016).

In order: the crosswalk; deterministic keys (the product's id carried in vendor metadata, a
valid tax id, the normalised email); then a fuzzy score against the golden records that
share a blocking key. A golden record that already holds an id from the same source is never
a match: a source's own distinct ids are distinct customers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.engine import Connection

from synchub.core.ids import new_id
from synchub.mapping.model import Observation
from synchub.mdm import match_store, store
from synchub.mdm.matching import (
    DEFAULT_WEIGHTS,
    MatchRecord,
    Verdict,
    Weights,
    blocking_keys,
    compare,
    contradicts,
    decide,
    match_keys,
    normalise,
    probability,
)
from synchub.mdm.weights import weights_from_mapping
from synchub.register.model import DEFAULT_MATCH_THRESHOLDS, MatchThresholds

log = structlog.get_logger(__name__)

MATCHED_ENTITIES = frozenset({"customer"})
MAX_SCORED = 50  # golden records scored per new source record, most shared keys first
MAX_PROPOSALS = 3  # match candidates queued per new source record


@dataclass(frozen=True)
class Proposal:
    """A golden record a person should compare with the new one."""

    target_id: str
    score: float
    evidence: dict[str, str]


@dataclass(frozen=True)
class Match:
    """Where a source record belongs, and why (the crosswalk rule and score)."""

    canonical_id: str
    rule: str  # crosswalk | product_id | tax_id | email | fuzzy | new
    score: float | None = None
    proposals: tuple[Proposal, ...] = ()


def record_of(entity: str, fields: Mapping[str, Any]) -> MatchRecord:
    """What matching compares in a record of canonical fields."""
    if entity != "customer":
        return MatchRecord(name=fields.get("name"), domain=fields.get("domain"))
    tax_id = fields.get("tax_id")
    return MatchRecord(
        name=fields.get("name"),
        company=fields.get("company_name"),
        email=fields.get("email"),
        phone=fields.get("phone"),
        country=fields.get("country"),
        tax_ids=frozenset({tax_id}) if tax_id else frozenset(),
        product_id=fields.get("product_account_id"),
    )


def find_match(
    conn: Connection,
    obs: Observation,
    *,
    workspace: str,
    thresholds: MatchThresholds = DEFAULT_MATCH_THRESHOLDS,
) -> Match:
    """The golden record a source record belongs to; a new id when there is none."""
    found = store.find_canonical_id(
        conn, workspace=workspace, entity=obs.entity, system=obs.system, external_id=obs.external_id
    )
    if found is not None:
        return Match(found, "crosswalk")
    if obs.entity not in MATCHED_ENTITIES:
        return Match(new_id(obs.entity), "new")
    record = normalise(record_of(obs.entity, obs.fields))
    for kind, value in match_keys(record):
        for canonical_id in match_store.golden_with_key(
            conn, workspace=workspace, entity=obs.entity, kind=kind, value=value
        ):
            if _is_taken_by_source(conn, workspace, canonical_id, obs.system):
                continue  # the source itself holds two records: they are two customers
            if contradicts(record, _golden_record(conn, obs.entity, canonical_id)):
                continue
            return Match(canonical_id, kind)
    scored = score_candidates(conn, record, workspace=workspace, entity=obs.entity,
                              system=obs.system, weights=_weights(thresholds))  # fmt: skip
    linked = [
        p for p in scored
        if decide(p.score, thresholds) is Verdict.LINK and not _is_contradicted(p)
    ]  # fmt: skip
    if len(linked) == 1:  # two records above the bar: a person decides which, if any
        return Match(linked[0].target_id, "fuzzy", score=linked[0].score)
    review = [p for p in scored if decide(p.score, thresholds) is not Verdict.NEW]
    return Match(new_id(obs.entity), "new", proposals=tuple(review[:MAX_PROPOSALS]))


def _is_contradicted(proposal: Proposal) -> bool:
    """Different ids under one scheme: never linked without a person, whatever the score."""
    return "different" in (proposal.evidence.get("tax_id"), proposal.evidence.get("product_id"))


def _weights(thresholds: MatchThresholds) -> Weights:
    """The register's weights for this entity (`synchub match train --write`), else shipped."""
    return (
        DEFAULT_WEIGHTS if thresholds.weights is None else weights_from_mapping(thresholds.weights)
    )


def score_candidates(
    conn: Connection,
    record: MatchRecord,
    *,
    workspace: str,
    entity: str,
    system: str,
    weights: Weights = DEFAULT_WEIGHTS,
) -> list[Proposal]:
    """Score a normalised record against the live golden records sharing a key with it
    (none holding an id from `system`), best first."""
    keys = blocking_keys(record) + match_keys(record)
    ids = match_store.blocked_candidates(conn, workspace=workspace, entity=entity, keys=keys,
                                         exclude_system=system, limit=MAX_SCORED)  # fmt: skip
    scored = []
    for canonical_id in ids:
        levels = compare(record, _golden_record(conn, entity, canonical_id))
        evidence = {name: str(level) for name, level in sorted(levels.items())}
        scored.append(Proposal(canonical_id, probability(levels, weights), evidence))
    return sorted(scored, key=lambda p: (-p.score, p.target_id))


def _golden_record(conn: Connection, entity: str, canonical_id: str) -> MatchRecord:
    return normalise(record_of(entity, store.get_golden(conn, entity, canonical_id) or {}))


def _is_taken_by_source(conn: Connection, workspace: str, canonical_id: str, system: str) -> bool:
    """Whether a golden record already carries an id from this source (a different record)."""
    links = store.external_ids_of(conn, workspace=workspace, canonical_ids=[canonical_id])
    return system in links.get(canonical_id, {})


def index_keys(conn: Connection, obs: Observation, *, workspace: str, canonical_id: str) -> None:
    """Store the match and blocking keys of a source record as it now stands.

    A partial observation (an API update of a few fields) keeps the golden record's values
    for the fields it does not mention. A deleted record identifies no one.
    """
    if obs.entity not in MATCHED_ENTITIES:
        return
    keys: list[tuple[str, str]] = []
    if not obs.deleted:
        golden = store.get_golden(conn, obs.entity, canonical_id) or {}
        record = normalise(record_of(obs.entity, {**golden, **obs.fields}))
        keys = match_keys(record) + blocking_keys(record)
    match_store.replace_keys(conn, workspace=workspace, entity=obs.entity, system=obs.system,
                             external_id=obs.external_id, canonical_id=canonical_id,
                             keys=keys)  # fmt: skip


def propose(
    conn: Connection,
    *,
    workspace: str,
    entity: str,
    system: str,
    external_id: str,
    canonical_id: str,
    proposals: tuple[Proposal, ...],
    at: datetime,
) -> list[str]:
    """Queue match candidates for a person, skipping pairs proposed or rejected before."""
    queued = []
    for proposal in proposals:
        if match_store.is_pair_known(conn, workspace=workspace, entity=entity, system=system,
                                     external_id=external_id, canonical_id=canonical_id,
                                     target_id=proposal.target_id):  # fmt: skip
            continue
        candidate_id = "mc_" + new_id("message").partition("_")[2]
        match_store.insert_candidate(
            conn,
            {"id": candidate_id, "workspace": workspace, "entity": entity, "system": system,
             "external_id": external_id, "canonical_id": canonical_id,
             "target_id": proposal.target_id, "score": proposal.score,
             "evidence": proposal.evidence, "status": "open", "created_at": at},
        )  # fmt: skip
        log.info("match.proposed", candidate_id=candidate_id, canonical_id=canonical_id,
                 target_id=proposal.target_id, score=round(proposal.score, 4))  # fmt: skip
        queued.append(candidate_id)
    return queued


def rematch(
    conn: Connection,
    *,
    workspace: str,
    entity: str,
    system: str,
    external_id: str,
    at: datetime,
    thresholds: MatchThresholds = DEFAULT_MATCH_THRESHOLDS,
) -> list[str]:
    """Score a linked source record's golden record against the others again and queue
    candidates (at or above `review_at`) for pairs never proposed or rejected before, e.g.
    after the thresholds change. Never links anything by itself."""
    canonical_id = store.find_canonical_id(
        conn, workspace=workspace, entity=entity, system=system, external_id=external_id
    )
    golden = store.get_golden(conn, entity, canonical_id) if canonical_id else None
    if canonical_id is None or golden is None or entity not in MATCHED_ENTITIES:
        return []
    record = normalise(record_of(entity, golden))
    scored = score_candidates(conn, record, workspace=workspace, entity=entity, system=system,
                              weights=_weights(thresholds))  # fmt: skip
    proposals = tuple(
        p for p in scored
        if decide(p.score, thresholds) is not Verdict.NEW and p.target_id != canonical_id
    )[:MAX_PROPOSALS]  # fmt: skip
    return propose(conn, workspace=workspace, entity=entity, system=system,
                   external_id=external_id, canonical_id=canonical_id, proposals=proposals,
                   at=at)  # fmt: skip
