"""synchub's side of the matching bench: blocking into candidate pairs, the batch score, and
the Fellegi-Sunter weights estimated per data set by expectation maximisation over the
candidate pairs (m, u and the share of matches; the first step scores with synchub's shipped
weights).

Everything that decides a level or a score is synchub's own code (`synchub.mdm.matching` and
`synchub.mdm.batch_scoring`); this module only finds pairs and fits `Weights`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from synchub.mdm.batch_scoring import ABSENT, LEVELS, LevelCodes
from synchub.mdm.matching import DEFAULT_WEIGHTS, Weights

Codes = npt.NDArray[np.int64]
FLOOR = 1e-6  # no level is impossible: keeps every weight finite


def codes_of(values: Sequence[Any]) -> Codes:
    """Integer codes of a blocking-key column; -1 where the key is missing."""
    index: dict[Any, int] = {}
    return np.fromiter(
        (-1 if v is None else index.setdefault(v, len(index)) for v in values),
        dtype=np.int64,
        count=len(values),
    )


def pairs_in_blocks(codes: Codes) -> tuple[Codes, Codes]:
    """Every pair (i < j in sort order) of records that share a key."""
    present = np.flatnonzero(codes >= 0)
    order = present[np.argsort(codes[present], kind="stable")]
    keys = codes[order]
    size = len(order)
    if size < 2:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], size]
    group = np.cumsum(np.r_[True, keys[1:] != keys[:-1]]) - 1
    position = np.arange(size)
    counts = ends[group] - position - 1
    first = np.repeat(position, counts)
    offset = np.arange(len(first)) - np.repeat(np.cumsum(counts) - counts, counts) + 1
    return order[first], order[first + offset]


def candidate_pairs(
    blocks: Sequence[Codes], size: int, source: Codes | None = None
) -> tuple[Codes, Codes]:
    """The union of the pairs of every blocking rule (each pair once, lower position left);
    with `source`, only pairs across two sources (linking, not deduplicating)."""
    keys = []
    for codes in blocks:
        left, right = pairs_in_blocks(codes)
        if source is not None:
            across = source[left] != source[right]
            left, right = left[across], right[across]
        keys.append(np.minimum(left, right) * size + np.maximum(left, right))
    union = np.sort(np.concatenate(keys)) if keys else np.zeros(0, dtype=np.int64)
    union = union[np.r_[True, union[1:] != union[:-1]]] if len(union) else union
    return union // size, union % size


# -- weights per data set ---------------------------------------------------------------------


def patterns_of(
    levels: Mapping[str, LevelCodes],
) -> tuple[list[str], npt.NDArray[np.int8], npt.NDArray[np.float64]]:
    """The distinct level patterns of the pairs (fields x levels, ABSENT kept) and counts."""
    fields = sorted(f for f, codes in levels.items() if (codes != ABSENT).any())
    if not fields:
        return [], np.zeros((0, 0), dtype=np.int8), np.zeros(0)
    code = np.zeros(len(levels[fields[0]]), dtype=np.int64)
    for field in fields:
        code = code * 5 + (levels[field].astype(np.int64) + 1)
    distinct, counts = np.unique(code, return_counts=True)
    matrix = np.zeros((len(distinct), len(fields)), dtype=np.int8)
    for column in range(len(fields) - 1, -1, -1):
        matrix[:, column] = distinct % 5 - 1
        distinct = distinct // 5
    return fields, matrix, counts.astype(np.float64)


def expectation_maximisation(
    levels: Mapping[str, LevelCodes],
    start: Weights,
    iterations: int = 60,
) -> tuple[float, dict[str, npt.NDArray[np.float64]], dict[str, npt.NDArray[np.float64]]]:
    """The share of matches among the candidate pairs and each field's m and u (its level
    shares among matches and among non-matches). The first expectation step scores the
    pairs with `start` (synchub's shipped weights): from a cold start EM settles on
    "same company" rather than "same customer" on the customer records."""
    fields, matrix, counts = patterns_of(levels)
    log_ratio = np.full(len(counts), start.prior * math.log(2))
    for column, field in enumerate(fields):
        table = np.array([start.fields[field][lv] for lv in LEVELS] + [0.0]) * math.log(2)
        log_ratio += table[matrix[:, column]]
    share, m, u = 0.5, {}, {}
    for _ in range(iterations):
        posterior = 1.0 / (1.0 + np.exp(-np.clip(log_ratio, -700, 700)))
        weighted = posterior * counts
        share = float(min(max(weighted.sum() / counts.sum(), FLOOR), 1 - FLOOR))
        for column, field in enumerate(fields):
            lv = matrix[:, column]
            present = lv != ABSENT
            m[field] = _shares(lv[present], weighted[present])
            u[field] = _shares(lv[present], counts[present] - weighted[present])
        log_ratio = np.full(len(counts), math.log(share / (1 - share)))
        for column, field in enumerate(fields):
            lv = matrix[:, column]
            present = lv != ABSENT
            log_ratio[present] += np.log(m[field][lv[present]] / u[field][lv[present]])
    return share, m, u


def _shares(levels: npt.NDArray[np.int8], weights: npt.NDArray[np.float64]) -> Any:
    sums = np.bincount(levels, weights=weights, minlength=len(LEVELS))
    return np.maximum(sums / max(sums.sum(), FLOOR), FLOOR)


def estimate_weights(candidate_levels: Mapping[str, LevelCodes]) -> tuple[Weights, dict[str, Any]]:
    """synchub `Weights` for one data set: m, u and the prior by EM over the candidates."""
    share, m, u = expectation_maximisation(candidate_levels, DEFAULT_WEIGHTS)
    fields = {name: dict(levels) for name, levels in DEFAULT_WEIGHTS.fields.items()}
    for field, m_field in m.items():
        fields[field] = {
            level: float(np.log2(m_field[k] / u[field][k])) for k, level in enumerate(LEVELS)
        }
    prior = math.log2(share / (1 - share))
    summary = {
        "match_share_of_candidates": round(share, 5),
        "prior_log2_odds": round(prior, 3),
        "weights": {f: {lv.value: round(w, 2) for lv, w in fields[f].items()} for f in sorted(m)},
    }
    return Weights(prior=prior, fields=fields), summary
