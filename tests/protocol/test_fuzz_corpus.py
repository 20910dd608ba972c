"""The fuzz targets (fuzz/targets.py) in the ordinary test run: the seed corpus replayed,
and hypothesis' random inputs on top.  The coverage-guided runs are ``nox -s fuzz``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ = Path(__file__).parents[2] / "fuzz"
sys.path.insert(0, str(FUZZ))

import targets  # noqa: E402

SEEDS = sorted((FUZZ / "corpus").glob("*/*"))


def test_there_is_a_seed_corpus_for_every_target() -> None:
    assert {p.parent.name for p in SEEDS} == set(targets.TARGETS)


@pytest.mark.parametrize("seed", SEEDS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_seed(seed: Path) -> None:
    targets.TARGETS[seed.parent.name](seed.read_bytes())


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=600))
def test_random_inputs_to_the_dispatcher(data: bytes) -> None:
    targets.dispatcher(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_inputs_to_the_decoder(data: bytes) -> None:
    targets.decoder(data)
