"""synchub's side of the matching bench: blocking into candidate pairs.

Everything that decides a level, a score or learnt weights is synchub's own code
(`synchub.mdm.matching`, `synchub.mdm.batch_scoring` and `synchub.mdm.weights`); this module
only finds the pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

Codes = npt.NDArray[np.int64]


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
