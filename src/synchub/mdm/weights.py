"""Fellegi-Sunter weights learnt from a workspace's own records, with a safeguard. Pure.

`fit_weights` estimates, per field and comparison level, m (the level's share among pairs of
one customer) and u (its share among pairs of two customers). u comes from random pairs of
records (almost all of them two customers), as splink samples it. m comes from expectation
maximisation over the candidate pairs that blocking brings together, starting from the
shipped weights' reading of them (`matching.DEFAULT_WEIGHTS`); EM also fits the share of
matches and the candidates' own non-match shares, which differ from random pairs' because
blocking gathers look-alikes. The weights are log2(m / u) and the prior the fitted matches'
log odds among all pairs, since those Bayes factors are relative to random pairs.

EM can settle on the wrong class ("same company" or "same name" rather than "same
customer"), so a fit is used only if it passes checks that need no labels (ADR 0018): it
explains the candidates better than the start, pairs sharing a deterministic key (normalised
email, tax id, product id: certain links) still link, and its match class describes the
other fields of those certain links at least as well as the shipped weights' does. Otherwise
the weights in force stay (`Fit.chosen`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from synchub.mdm.batch_scoring import (
    ABSENT,
    LEVELS,
    LevelCodes,
    compare_pairs,
    prepare,
    probabilities,
)
from synchub.mdm.matching import (
    DEFAULT_WEIGHTS,
    Level,
    MatchRecord,
    Weights,
    blocking_keys,
    match_keys,
)
from synchub.register.model import Register

Floats = npt.NDArray[np.float64]
FLOOR = 1e-6  # no level is impossible: every weight stays finite
LN2 = math.log(2.0)


@dataclass(frozen=True)
class Fit:
    """A fit and the safeguard's verdict on it; `chosen` is what to score with."""

    fitted: Weights
    start: Weights
    accepted: bool
    reasons: tuple[str, ...]
    match_share: float  # fitted share of matches among the candidate pairs
    matched_pairs: float  # fitted number of matched candidate pairs
    m: Mapping[str, tuple[float, ...]]
    u: Mapping[str, tuple[float, ...]]  # from random pairs: what the weights divide by
    u_candidates: Mapping[str, tuple[float, ...]]  # EM's non-matches among the candidates
    log_likelihood: tuple[float, float]  # per candidate pair: start, fitted
    certain_pairs: int
    certain_linked: tuple[int, int]  # certain pairs linked at link_at: start, fitted
    known_match_log_likelihood: tuple[float, float]  # per certain pair: start, fitted
    iterations: int

    @property
    def chosen(self) -> Weights:
        """The fitted weights when the safeguard accepted them, else the starting ones."""
        return self.fitted if self.accepted else self.start


def level_shares(levels: LevelCodes, counts: Floats | None = None) -> Floats:
    """Each level's share among the pairs where the field is present (floored, summing ~1)."""
    present = levels != ABSENT
    weights = None if counts is None else counts[present]
    sums = np.bincount(levels[present].astype(np.int64), weights=weights, minlength=len(LEVELS))
    total = float(sums.sum())
    if total <= 0:
        return np.full(len(LEVELS), 1.0 / len(LEVELS))
    shares = np.maximum(sums / total, FLOOR)
    return np.asarray(shares / shares.sum(), dtype=np.float64)


def u_from_random_pairs(random_levels: Mapping[str, LevelCodes]) -> dict[str, Floats]:
    """u per field: the level shares among random pairs (nearly all two customers)."""
    return {f: level_shares(codes) for f, codes in random_levels.items()}


def patterns(
    levels: Mapping[str, LevelCodes], fields: list[str]
) -> tuple[npt.NDArray[np.int8], Floats, npt.NDArray[np.int64]]:
    """Distinct level patterns (pattern x field, ABSENT kept), their counts, each pair's row."""
    size = len(next(iter(levels.values()))) if levels else 0
    code = np.zeros(size, dtype=np.int64)
    for name in fields:
        code = code * 5 + (levels[name].astype(np.int64) + 1)
    distinct, inverse, counts = np.unique(code, return_inverse=True, return_counts=True)
    matrix = np.zeros((len(distinct), len(fields)), dtype=np.int8)
    rest = distinct.copy()
    for column in range(len(fields) - 1, -1, -1):
        matrix[:, column] = rest % 5 - 1
        rest = rest // 5
    return matrix, counts.astype(np.float64), inverse.reshape(-1)


def _log_factors(
    matrix: npt.NDArray[np.int8], table: Mapping[str, Floats], fields: list[str]
) -> Floats:
    """Per pattern, the sum of the natural-log table entries of its present levels."""
    total = np.zeros(len(matrix))
    for column, name in enumerate(fields):
        entries = np.r_[np.log(table[name]), 0.0]  # ABSENT (-1) picks the trailing 0
        total += entries[matrix[:, column]]
    return total


def _mixture_log_likelihood(
    matrix: npt.NDArray[np.int8], counts: Floats, share: float, m_log: Floats, u_log: Floats
) -> float:
    """Mean log-likelihood per candidate pair of the two-class mixture."""
    both = np.logaddexp(math.log(share) + m_log, math.log(1 - share) + u_log)
    return float((both * counts).sum() / counts.sum())


def expectation_maximisation(
    matrix: npt.NDArray[np.int8],
    counts: Floats,
    fields: list[str],
    m: Mapping[str, Floats],
    u: Mapping[str, Floats],
    share: float,
    *,
    iterations: int = 100,
    tolerance: float = 1e-6,
) -> tuple[float, dict[str, Floats], dict[str, Floats], int]:
    """The match share, m and the candidates' own u by EM over the candidate patterns,
    from a starting m, u and share; and the number of iterations run."""
    m, u = dict(m), dict(u)
    done = 0
    for done in range(1, iterations + 1):  # noqa: B007
        m_log = _log_factors(matrix, m, fields)
        u_log = _log_factors(matrix, u, fields)
        log_odds = math.log(share / (1 - share)) + m_log - u_log
        posterior = 1.0 / (1.0 + np.exp(-np.clip(log_odds, -700, 700)))
        weighted = posterior * counts
        new_share = float(min(max(weighted.sum() / counts.sum(), FLOOR), 1 - FLOOR))
        change = abs(new_share - share)
        for column, name in enumerate(fields):
            new_m = level_shares(matrix[:, column], weighted)
            change = max(change, float(np.abs(new_m - m[name]).max()))
            m[name] = new_m
            u[name] = level_shares(matrix[:, column], counts - weighted)
        share = new_share
        if change < tolerance:
            break
    return share, m, u, done


CERTAIN_KEYS = ("email", "tax_id", "product_id")  # an exact level here is a certain link


def certain_links(levels: Mapping[str, LevelCodes]) -> npt.NDArray[np.bool_]:
    """Pairs that share a deterministic key (ADR 0016): the matcher links them whatever the
    score, so any weights worth having must score them as links too."""
    size = len(next(iter(levels.values()))) if levels else 0
    certain = np.zeros(size, dtype=bool)
    for name in CERTAIN_KEYS:
        if name in levels:
            certain |= levels[name] == LEVELS.index(Level.EXACT)
    return certain


def fit_weights(
    candidate_levels: Mapping[str, LevelCodes],
    random_levels: Mapping[str, LevelCodes],
    *,
    total_pairs: int,
    link_at: float,
    start: Weights = DEFAULT_WEIGHTS,
    iterations: int = 100,
) -> Fit:
    """Fit m, u and the prior (module docstring) and judge the fit (ADR 0018)."""
    fields = sorted(
        f for f, codes in candidate_levels.items()
        if (codes != ABSENT).any() and f in random_levels and (random_levels[f] != ABSENT).any()
    )  # fmt: skip
    u = u_from_random_pairs({f: random_levels[f] for f in fields})
    matrix, counts, _ = patterns({f: candidate_levels[f] for f in fields}, fields)
    candidates = float(counts.sum())
    # The start: one M step from the shipped weights' posteriors (their reading of the data).
    posterior = probabilities(candidate_levels, start)
    share_start = min(max(float(posterior.mean()) if candidates else FLOOR, FLOOR), 1 - FLOOR)
    m_start = {name: level_shares(candidate_levels[name], posterior) for name in fields}
    u_start = {name: level_shares(candidate_levels[name], 1 - posterior) for name in fields}
    share, m, u_candidates, done = expectation_maximisation(
        matrix, counts, fields, m_start, u_start, share_start, iterations=iterations
    )
    matched = share * candidates
    prior = math.log2(max(matched, FLOOR) / max(total_pairs - matched, 1.0))
    table = {name: dict(levels) for name, levels in start.fields.items()}
    for name in fields:
        table[name] = {lv: float(np.log2(m[name][k] / u[name][k])) for k, lv in enumerate(LEVELS)}
    fitted = Weights(prior=prior, fields=table)
    likelihood = (
        _mixture_log_likelihood(
            matrix,
            counts,
            share_start,
            _log_factors(matrix, m_start, fields),
            _log_factors(matrix, u_start, fields),
        ),
        _mixture_log_likelihood(
            matrix,
            counts,
            share,
            _log_factors(matrix, m, fields),
            _log_factors(matrix, u_candidates, fields),
        ),
    )
    certain = certain_links(candidate_levels)
    linked_start = int((probabilities(candidate_levels, start)[certain] >= link_at).sum())
    linked_fitted = int((probabilities(candidate_levels, fitted)[certain] >= link_at).sum())
    known = _known_match_log_likelihood(candidate_levels, certain, fields, (m_start, m))
    reasons = []
    if not likelihood[1] > likelihood[0]:
        reasons.append("the fit explains the candidate pairs no better than the start")
    if known[1] < known[0]:
        reasons.append(
            "the fitted matches do not look like the certain links: their other fields are"
            f" likelier under the shipped weights' matches ({known[0]:.3f} against"
            f" {known[1]:.3f} per pair)"
        )
    if linked_fitted < linked_start:
        reasons.append(
            f"certain links lost: {linked_fitted} of {int(certain.sum())} pairs sharing a"
            f" deterministic key link with the fit, {linked_start} with the start"
        )
    return Fit(
        fitted=fitted,
        start=start,
        accepted=not reasons,
        reasons=tuple(reasons),
        match_share=share,
        matched_pairs=matched,
        m={f: tuple(float(x) for x in m[f]) for f in fields},
        u={f: tuple(float(x) for x in u[f]) for f in fields},
        u_candidates={f: tuple(float(x) for x in u_candidates[f]) for f in fields},
        log_likelihood=likelihood,
        certain_pairs=int(certain.sum()),
        certain_linked=(linked_start, linked_fitted),
        known_match_log_likelihood=known,
        iterations=done,
    )


# Fields a shared deterministic key decides by itself: the email's domain comes from the email.
_IMPLIED_BY_KEYS = frozenset({*CERTAIN_KEYS, "domain"})


def _known_match_log_likelihood(
    levels: Mapping[str, LevelCodes],
    certain: npt.NDArray[np.bool_],
    fields: list[str],
    ms: tuple[Mapping[str, Floats], Mapping[str, Floats]],
) -> tuple[float, float]:
    """Mean log-likelihood, per certain pair, of its levels on the fields the key does not
    decide, under each m: how well each m describes pairs known to be one customer."""
    result = []
    pairs = max(int(certain.sum()), 1)
    for m in ms:
        total = 0.0
        for name in fields:
            if name in _IMPLIED_BY_KEYS:
                continue
            codes = levels[name][certain]
            codes = codes[codes != ABSENT].astype(np.int64)
            total += float(np.log(m[name])[codes].sum())
        result.append(total / pairs)
    return result[0], result[1]


def random_pairs(
    size: int, count: int, *, seed: int = 5, source: npt.NDArray[np.int64] | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """About `count` random pairs of distinct records (across sources when `source` is
    given), for u: drawn with replacement, as splink's random sampling does."""
    if size < 2:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    rng = np.random.default_rng(seed)
    left = rng.integers(0, size, count, dtype=np.int64)
    right = rng.integers(0, size, count, dtype=np.int64)
    keep = left != right
    if source is not None:
        keep &= source[left] != source[right]
    return left[keep], right[keep]


def weights_as_mapping(weights: Weights) -> dict[str, object]:
    """Weights as plain data (the register's `weights:` form), rounded to 1/1000 bit."""
    return {
        "prior": round(weights.prior, 3),
        "fields": {
            name: {lv.value: round(float(w), 3) for lv, w in levels.items()}
            for name, levels in sorted(weights.fields.items())
        },
    }


def weights_from_mapping(data: Mapping[str, object], base: Weights = DEFAULT_WEIGHTS) -> Weights:
    """Weights from plain data: `prior` and, per field named, a weight for each level; fields
    not named keep `base`'s. Raises ValueError naming what is wrong."""
    unknown = set(data) - {"prior", "fields"}
    if unknown:
        raise ValueError(f"weights: unknown key {sorted(unknown)[0]!r} (prior, fields)")
    prior = data.get("prior", base.prior)
    if isinstance(prior, bool) or not isinstance(prior, int | float) or not math.isfinite(prior):
        raise ValueError("weights.prior must be a finite number")
    fields_data = data.get("fields", {})
    if not isinstance(fields_data, Mapping):
        raise ValueError("weights.fields must map field names to levels")
    table = {name: dict(levels) for name, levels in base.fields.items()}
    for name, levels in fields_data.items():
        if name not in base.fields:
            raise ValueError(f"weights.fields: unknown field {name!r}")
        if not isinstance(levels, Mapping) or set(levels) != {lv.value for lv in LEVELS}:
            raise ValueError(
                f"weights.fields.{name} needs exactly exact, close, similar and different"
            )
        for level, value in levels.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"weights.fields.{name}.{level} must be a number")
            if not math.isfinite(value):
                raise ValueError(f"weights.fields.{name}.{level} must be finite")
        table[name] = {Level(level): float(value) for level, value in levels.items()}
    return Weights(prior=float(prior), fields=table)


def weights_for(register: Register, entity: str) -> Weights:
    """The register's weights for an entity (`matching: {entity: {weights: ...}}`), else the
    shipped ones. The loader has validated them."""
    declared = register.match_thresholds(entity).weights
    return DEFAULT_WEIGHTS if declared is None else weights_from_mapping(declared)


MAX_BLOCK = 50  # as the matcher: a key shared by more records says too little to score them all


def blocked_pairs(
    records: Sequence[MatchRecord], max_block: int = MAX_BLOCK
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Candidate pairs of normalised records: every pair that shares one of the matcher's
    blocking or deterministic keys (`matching.blocking_keys`, `match_keys`), each pair once;
    a key shared by more than `max_block` records is skipped."""
    blocks: dict[tuple[str, str], list[int]] = {}
    for position, record in enumerate(records):
        for key in {*blocking_keys(record), *match_keys(record)}:
            blocks.setdefault(key, []).append(position)
    pairs = {
        (a, b)
        for members in blocks.values()
        if 1 < len(members) <= max_block
        for i, a in enumerate(members)
        for b in members[i + 1 :]
    }
    ordered = sorted(pairs)
    left = np.fromiter((a for a, _ in ordered), dtype=np.int64, count=len(ordered))
    right = np.fromiter((b for _, b in ordered), dtype=np.int64, count=len(ordered))
    return left, right


def train(
    records: Sequence[MatchRecord],
    *,
    link_at: float,
    start: Weights = DEFAULT_WEIGHTS,
    random_count: int = 1_000_000,
    seed: int = 5,
) -> Fit:
    """Learn weights from a workspace's own records (`synchub match train`): candidate
    pairs by the matcher's keys, u from random pairs, m by EM, then the safeguard."""
    prepared = prepare(records)
    left, right = blocked_pairs(prepared.normalised)
    size = len(records)
    random_left, random_right = random_pairs(size, min(random_count, size * size), seed=seed)
    return fit_weights(
        compare_pairs(prepared, left, right),
        compare_pairs(prepared, random_left, random_right),
        total_pairs=size * (size - 1) // 2,
        link_at=link_at,
        start=start,
    )
