"""splink 4 (DuckDB) beside synchub in the matching bench: the same records, the same blocking
rules, trained unsupervised the way splink's own FEBRL examples train (the prior from
deterministic rules, u from random pairs, m by EM in two blocked sessions).

Comparisons are splink's library comparisons for each field (given name and surname
separately with `NameComparison`, Jaro-Winkler for addresses and companies, Levenshtein for
ids and postcodes, `DateOfBirthComparison`, `EmailComparison`, exact state, domain and
phone); term-frequency adjustments are off (synchub has none either).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import splink.comparison_library as cl
from splink import DuckDBAPI, Linker, SettingsCreator, block_on

from _matching_data import Dataset

for name in ("splink", "splink.internals"):
    logging.getLogger(name).setLevel(logging.ERROR)


def comparisons(kind: str) -> list[Any]:
    """splink's comparisons for the fields of a data set."""
    if kind == "febrl":
        return [
            cl.NameComparison("given_name"),
            cl.NameComparison("surname"),
            cl.DateOfBirthComparison("dob", input_is_string=True, datetime_format="%Y-%m-%d"),
            cl.LevenshteinAtThresholds("soc_sec_id", [1, 2]),
            cl.JaroWinklerAtThresholds("address", [0.9, 0.7]),
            cl.JaroWinklerAtThresholds("suburb", [0.9]),
            cl.LevenshteinAtThresholds("postcode", [1]),
            cl.ExactMatch("state"),
        ]
    return [
        cl.NameComparison("given_name"),
        cl.NameComparison("surname"),
        cl.JaroWinklerAtThresholds("company", [0.9, 0.8]),
        cl.EmailComparison("email"),
        cl.ExactMatch("domain"),
        cl.ExactMatch("phone"),
    ]


def training_rules(kind: str) -> tuple[list[Any], list[Any]]:
    """Deterministic rules for the prior, and the EM sessions' blocking rules."""
    if kind == "febrl":
        return (
            [block_on("soc_sec_id"), block_on("given_name", "surname", "dob")],
            [block_on("dob"), block_on("given_name", "surname")],
        )
    return (
        [block_on("email"), block_on("phone")],
        [block_on("phone"), block_on("given_name", "surname")],
    )


@dataclass
class SplinkModel:
    """A trained linker over one data set."""

    linker: Linker
    connection: duckdb.DuckDBPyConnection
    train_seconds: float


def train(dataset: Dataset, u_pairs: float, seed: int = 5) -> SplinkModel:
    """Register the records, train the model (timed apart from prediction)."""
    connection = duckdb.connect()
    db_api = DuckDBAPI(connection=connection)
    settings = SettingsCreator(
        link_type="link_only" if dataset.link_only else "dedupe_only",
        comparisons=comparisons(dataset.kind),
        blocking_rules_to_generate_predictions=[block_on(c) for c in dataset.blocking],
        retain_intermediate_calculation_columns=False,
        retain_matching_columns=False,
    )
    table = dataset.table
    if dataset.link_only:
        inputs: Any = [
            table[table.source_dataset == s].drop(columns="source_dataset") for s in ("a", "b")
        ]
    else:
        inputs = table
    started = time.perf_counter()
    linker = Linker(inputs, settings, db_api)
    deterministic, em_rules = training_rules(dataset.kind)
    linker.training.estimate_probability_two_random_records_match(deterministic, recall=0.8)
    linker.training.estimate_u_using_random_sampling(max_pairs=u_pairs, seed=seed)
    for rule in em_rules:
        linker.training.estimate_parameters_using_expectation_maximisation(rule)
    return SplinkModel(linker, connection, time.perf_counter() - started)


def predict(model: SplinkModel, size: int) -> tuple[npt.NDArray[np.int64], Any, float]:
    """Every candidate pair and its match probability; seconds that `predict` took."""
    started = time.perf_counter()
    result = model.linker.inference.predict()
    seconds = time.perf_counter() - started
    table = result.physical_name  # a name splink made, not input
    query = f"select unique_id_l, unique_id_r, match_probability from {table}"  # noqa: S608
    columns = model.connection.execute(query).fetchnumpy()
    result.drop_table_from_database_and_remove_from_cache()
    left = np.asarray(columns["unique_id_l"], dtype=np.int64)
    right = np.asarray(columns["unique_id_r"], dtype=np.int64)
    keys = np.minimum(left, right) * size + np.maximum(left, right)
    probabilities = np.asarray(columns["match_probability"], dtype=np.float64)
    return keys, probabilities, seconds
