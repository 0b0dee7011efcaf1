"""The threshold sweep over the labelled set with the local embedder and the semantic guard
(docs/cache.md's table).

``python -m tests.cache.semantic_sweep`` prints the table; tests/cache/test_semantic_quality.py
holds the default threshold to it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sluice.cache.embedders import LocalEmbedder
from sluice.cache.semantic import guard

DATA = Path(__file__).parent / "data" / "semantic_pairs.jsonl"
THRESHOLDS = (0.80, 0.85, 0.88, 0.90, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98)


def pairs() -> list[dict[str, str]]:
    return [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]


def similarities(embedder: LocalEmbedder) -> list[tuple[dict[str, str], float]]:
    cache: dict[str, np.ndarray] = {}

    def vec(text: str) -> np.ndarray:
        if text not in cache:
            cache[text] = embedder.encode(text)
        return cache[text]

    # A pair whose guards differ (numbers, negation) can never hit: similarity -1.
    return [
        (p, float(vec(p["a"]) @ vec(p["b"])) if guard(p["a"]) == guard(p["b"]) else -1.0) for p in pairs()
    ]


def rates(sims: list[tuple[dict[str, str], float]], threshold: float) -> tuple[float, float]:
    para = [s for p, s in sims if p["label"] == "paraphrase"]
    near = [s for p, s in sims if p["label"] == "near_miss"]
    return sum(s >= threshold for s in para) / len(para), sum(s >= threshold for s in near) / len(near)


def main() -> None:
    sims = similarities(LocalEmbedder())
    n_para = sum(p["label"] == "paraphrase" for p, _ in sims)
    print(f"{len(sims)} pairs: {n_para} paraphrases, {len(sims) - n_para} near misses")
    print("| threshold | paraphrase hit rate | false-hit rate (near misses) |")
    print("| --- | --- | --- |")
    for t in THRESHOLDS:
        hit, false = rates(sims, t)
        print(f"| {t:.2f} | {hit:.1%} | {false:.1%} |")
    kinds: dict[str, list[float]] = {}
    for p, s in sims:
        kinds.setdefault(p["kind"], []).append(s)
    for kind, values in sorted(kinds.items()):
        print(f"{kind}: {len(values)} pairs, max {max(values):.3f}, p50 {float(np.median(values)):.3f}")


if __name__ == "__main__":
    main()
