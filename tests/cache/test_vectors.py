"""The vector index: nearest above a threshold, expiry, removal, the global bound."""

from __future__ import annotations

import numpy as np

from sluice.cache.vectors import VectorIndex


def _unit(*xs: float) -> np.ndarray:
    v = np.asarray(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_nearest_above_threshold_only_in_its_bucket() -> None:
    idx = VectorIndex(100)
    idx.add("b1", _unit(1, 0, 0), "k1", 100.0)
    idx.add("b1", _unit(0.9, 0.1, 0), "k2", 100.0)
    idx.add("b2", _unit(0, 1, 0), "k3", 100.0)
    found = idx.nearest("b1", _unit(1, 0.05, 0), 0.9, 0.0)
    assert found is not None and found[0] == "k1"
    assert idx.nearest("b1", _unit(0, 1, 0), 0.9, 0.0) is None, "b2's vector is never seen from b1"
    assert idx.nearest("b1", _unit(1, 0, 0), 0.9, 200.0) is None, "expired"
    assert idx.nearest("b1", _unit(1, 0), 0.1, 0.0) is None, "another embedder's dimensions"


def test_remove_and_bound() -> None:
    idx = VectorIndex(3)
    for i in range(5):
        idx.add("b", _unit(1, i, 0), f"k{i}", 100.0)
    assert idx.size == 3
    assert idx.nearest("b", _unit(1, 0, 0), 0.99, 0.0) is None, "the oldest were dropped"
    idx.remove("b", "k4")
    idx.remove("b", "nope")
    assert idx.size == 2
    found = idx.nearest("b", _unit(1, 3, 0), 0.999, 0.0)
    assert found is not None and found[0] == "k3"
    idx.add("b", _unit(1, 3, 0), "k3", 100.0)  # the same entry again: refreshed, not duplicated
    assert idx.size == 2
