"""Weights learnt from the records (mdm/weights.py, ADR 0018): EM recovers known m and u on
synthetic pairs, and the safeguard keeps the shipped weights when EM settles on the wrong
mixture."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from synchub.mdm.batch_scoring import ABSENT, LEVELS, probabilities
from synchub.mdm.matching import DEFAULT_WEIGHTS, Level
from synchub.mdm.weights import (
    certain_links,
    fit_weights,
    random_pairs,
    weights_as_mapping,
    weights_from_mapping,
)

LevelCodes = npt.NDArray[np.int8]


def draw(rng: np.random.Generator, shares: list[float], size: int) -> LevelCodes:
    """Level codes (EXACT, CLOSE, SIMILAR, DIFFERENT) drawn with the given shares."""
    return rng.choice(len(LEVELS), size=size, p=shares).astype(np.int8)


def mixture(
    rng: np.random.Generator,
    spec: dict[str, tuple[list[float], list[float]]],
    share: float,
    size: int,
) -> dict[str, LevelCodes]:
    """Pairs drawn from the two-class model: each a match with `share`, levels from m or u."""
    matched = rng.random(size) < share
    return {
        name: np.where(matched, draw(rng, m, size), draw(rng, u, size)).astype(np.int8)
        for name, (m, u) in spec.items()
    }


def test_em_recovers_the_m_and_u_it_was_given() -> None:
    rng = np.random.default_rng(11)
    spec = {  # field: (m, u), shares of exact, close, similar, different
        "name": ([0.7, 0.15, 0.1, 0.05], [0.02, 0.03, 0.05, 0.9]),
        "address": ([0.6, 0.2, 0.1, 0.1], [0.01, 0.02, 0.07, 0.9]),
        "date_of_birth": ([0.85, 0.1, 0.0, 0.05], [0.01, 0.04, 0.0, 0.95]),
        "postcode": ([0.8, 0.1, 0.0, 0.1], [0.05, 0.1, 0.0, 0.85]),
    }
    candidates = mixture(rng, spec, share=0.3, size=60_000)
    random_levels = mixture(rng, spec, share=0.0, size=200_000)  # random pairs: non-matches

    fit = fit_weights(candidates, random_levels, total_pairs=600_000, link_at=0.95)

    assert fit.match_share == pytest.approx(0.3, abs=0.01)
    for name, (m, u) in spec.items():
        assert np.allclose(fit.m[name], m, atol=0.015), name
        assert np.allclose(fit.u[name], u, atol=0.01), name
    assert fit.accepted, fit.reasons
    assert fit.chosen is fit.fitted
    # the prior is the fitted matches' odds among all pairs, not among the candidates
    assert fit.fitted.prior == pytest.approx(np.log2(18_000 / (600_000 - 18_000)), abs=0.1)
    exact = fit.fitted.fields["name"][Level.EXACT]
    assert exact == pytest.approx(np.log2(0.7 / 0.02), abs=0.1)


def blocked_customers(rng: np.random.Generator) -> dict[str, LevelCodes]:
    """Candidate pairs as blocking on name, domain and phone brings them together: 500 real
    duplicates (mostly the same email and phone), 3,000 colleagues (same company and domain,
    nothing else) and 20,000 strangers who share a common name and nothing else."""
    groups = (  # per field: level shares (exact, close, similar, different) per group
        ("name", [0.7, 0.25, 0.04, 0.01], [0.01, 0.01, 0.03, 0.95], [0.9, 0.05, 0.03, 0.02]),
        ("company", [0.85, 0.1, 0.02, 0.03], [0.95, 0.03, 0.01, 0.01], [0.05, 0.01, 0.01, 0.93]),
        ("domain", [0.9, 0.05, 0, 0.05], [0.97, 0.01, 0, 0.02], [0.02, 0, 0, 0.98]),
        ("email", [0.8, 0.05, 0, 0.15], [0, 0.01, 0, 0.99], [0, 0.001, 0, 0.999]),
        ("phone", [0.9, 0, 0, 0.1], [0.02, 0, 0, 0.98], [0.001, 0, 0, 0.999]),
    )
    return {
        name: np.concatenate([draw(rng, d, DUPES), draw(rng, c, 3_000), draw(rng, s, 20_000)])
        for name, d, c, s in groups
    }


DUPES = 500


def test_the_safeguard_keeps_the_shipped_weights_when_em_learns_the_wrong_class() -> None:
    rng = np.random.default_rng(7)
    candidates = blocked_customers(rng)
    random_levels = {  # random customers: names, phones and emails almost never agree
        "name": draw(rng, [0.00002, 0.0001, 0.0003, 0.99958], 200_000),
        "company": draw(rng, [0.002, 0.001, 0.002, 0.995], 200_000),
        "domain": draw(rng, [0.002, 0, 0, 0.998], 200_000),
        "email": draw(rng, [0.00001, 0.0001, 0, 0.99989], 200_000),
        "phone": draw(rng, [0.0001, 0, 0, 0.9999], 200_000),
    }

    fit = fit_weights(candidates, random_levels, total_pairs=50_000_000, link_at=0.95)

    # EM drifted: it counts several times the real duplicates as matches, and its weights
    # link three times as many colleagues and strangers as the shipped weights do ...
    assert fit.matched_pairs > 5 * DUPES
    wrong = (probabilities(candidates, fit.fitted)[DUPES:] >= 0.95).sum()
    wrong_shipped = (probabilities(candidates, DEFAULT_WEIGHTS)[DUPES:] >= 0.95).sum()
    assert wrong > 2 * wrong_shipped
    # ... and the safeguard saw it from the certain links (same email), without labels
    assert not fit.accepted
    assert any("do not look like the certain links" in reason for reason in fit.reasons)
    assert fit.known_match_log_likelihood[1] < fit.known_match_log_likelihood[0]
    assert fit.chosen is DEFAULT_WEIGHTS


def test_certain_links_are_pairs_sharing_a_deterministic_key() -> None:
    exact, different = LEVELS.index(Level.EXACT), LEVELS.index(Level.DIFFERENT)
    levels = {
        "email": np.array([exact, different, ABSENT, different], dtype=np.int8),
        "tax_id": np.array([ABSENT, exact, ABSENT, ABSENT], dtype=np.int8),
        "name": np.array([different, different, exact, exact], dtype=np.int8),
    }
    assert certain_links(levels).tolist() == [True, True, False, False]


def test_random_pairs_are_distinct_records_and_across_sources_when_linking() -> None:
    left, right = random_pairs(50, 1_000, seed=3)
    assert len(left) > 900
    assert (left != right).all()
    assert left.max() < 50
    source = np.array([0] * 25 + [1] * 25, dtype=np.int64)
    left, right = random_pairs(50, 1_000, seed=3, source=source)
    assert (source[left] != source[right]).all()


def test_weights_round_trip_through_plain_data_and_bad_data_names_the_field() -> None:
    data = weights_as_mapping(DEFAULT_WEIGHTS)
    assert weights_from_mapping(data) == DEFAULT_WEIGHTS
    partial = weights_from_mapping(
        {"prior": -10, "fields": {"name": {"exact": 7, "close": 5, "similar": 1, "different": -4}}}
    )
    assert partial.prior == -10
    assert partial.fields["name"][Level.EXACT] == 7
    assert partial.fields["phone"] == DEFAULT_WEIGHTS.fields["phone"]
    with pytest.raises(ValueError, match="unknown field 'shoe_size'"):
        weights_from_mapping({"fields": {"shoe_size": {}}})
    with pytest.raises(ValueError, match=r"weights.fields.name needs exactly"):
        weights_from_mapping({"fields": {"name": {"exact": 1}}})
    with pytest.raises(ValueError, match=r"weights.fields.name.close must be a number"):
        weights_from_mapping(
            {"fields": {"name": {"exact": 1, "close": "x", "similar": 0, "different": -1}}}
        )
    with pytest.raises(ValueError, match="prior must be a finite number"):
        weights_from_mapping({"prior": float("nan")})
