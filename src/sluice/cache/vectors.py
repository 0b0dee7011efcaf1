"""The in-process vector index of the semantic cache: per bucket, brute-force cosine search.

A bucket is everything a semantic hit must match exactly — the scope, route, model, versions, and
the whole request except the last user turn — so a search never even sees another scope's vectors.
Vectors are unit length, so cosine similarity is a dot product: at 10,000 vectors of 384 floats a
search is one matrix-vector product (~1 ms). Bounded by ``max_vectors`` over all buckets (oldest
first); thread-safe, because searches run on the embedder's thread.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from sluice.cache.embedders import Vector


@dataclass(slots=True)
class _Bucket:
    dims: int
    matrix: Vector = field(init=False)
    keys: list[str] = field(default_factory=list)
    expires: npt.NDArray[np.float64] = field(init=False)
    pos: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Room for one: most buckets hold a handful of vectors, and there may be many buckets.
        self.matrix = np.zeros((1, self.dims), dtype=np.float32)
        self.expires = np.zeros(1, dtype=np.float64)


class VectorIndex:
    def __init__(self, max_vectors: int = 200_000) -> None:
        self.max_vectors = max_vectors
        self._buckets: dict[str, _Bucket] = {}
        self._order: deque[tuple[str, str]] = deque()
        self._lock = threading.Lock()
        self.size = 0

    def add(self, bucket: str, vector: Vector, key: str, expires_at: float) -> None:
        with self._lock:
            b = self._buckets.get(bucket)
            if b is None:
                b = self._buckets[bucket] = _Bucket(vector.shape[0])
            elif vector.shape[0] != b.dims:
                return  # another embedder's vector (the policy changed it): not comparable
            i = b.pos.get(key)
            if i is not None:  # the same entry written again: refresh its vector and lifetime
                b.matrix[i], b.expires[i] = vector, expires_at
                return
            n = len(b.keys)
            if n == b.matrix.shape[0]:
                b.matrix = np.concatenate([b.matrix, np.zeros_like(b.matrix)])
                b.expires = np.concatenate([b.expires, np.zeros_like(b.expires)])
            b.matrix[n], b.expires[n] = vector, expires_at
            b.pos[key] = n
            b.keys.append(key)
            self._order.append((bucket, key))
            self.size += 1
            while self.size > self.max_vectors and self._order:
                self._forget(*self._order.popleft())

    def nearest(self, bucket: str, vector: Vector, threshold: float, now: float) -> tuple[str, float] | None:
        """The live entry most similar to ``vector`` at or above ``threshold``, with its similarity."""
        with self._lock:
            b = self._buckets.get(bucket)
            if b is None or not b.keys or vector.shape[0] != b.dims:
                return None
            n = len(b.keys)
            sims = np.where(b.expires[:n] > now, b.matrix[:n] @ vector, -2.0)
            i = int(np.argmax(sims))
            best = float(sims[i])
            return (b.keys[i], min(best, 1.0)) if best >= threshold else None

    def remove(self, bucket: str, key: str) -> None:
        with self._lock:
            self._forget(bucket, key)

    def _forget(self, bucket: str, key: str) -> None:
        b = self._buckets.get(bucket)
        i = b.pos.pop(key, None) if b is not None else None
        if b is None or i is None:
            return
        last = len(b.keys) - 1
        if i != last:  # move the last vector into the hole
            b.matrix[i], b.keys[i], b.expires[i] = b.matrix[last], b.keys[last], b.expires[last]
            b.pos[b.keys[i]] = i
        b.keys.pop()
        self.size -= 1
        if not b.keys:
            del self._buckets[bucket]

    def clear(self) -> None:
        with self._lock:
            self._buckets.clear()
            self._order.clear()
            self.size = 0
