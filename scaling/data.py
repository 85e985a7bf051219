"""Corpus loading, the train/validation split, and deterministic batches.

Sources (DataConfig.source):
- "stdlib": every *.py file of the running interpreter's standard library (no site-packages), bytes.
- a text file or a folder of text files (every non-hidden file under it, sorted by relative path), bytes.
- a `.bin` file: pre-tokenized uint16 ids (nanoGPT's format), every id below data.vocab_size.

The tokenized corpus is cached as .bin files under $SCALING_CACHE (default ~/.cache/scaling), keyed by
a fingerprint of the source's file list, sizes and mtimes, so later runs only memmap it. Cache files
are written to a temp name and os.replace'd, so parallel jobs never read half a file; two jobs building
the same cache at once both write identical bytes and the last rename wins.

Batches are a pure function of (seed, step): a resumed run sees exactly the data an uninterrupted one
would, with no data-loader state to checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import stat
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from scaling.config import BYTE_VOCAB, DataConfig, is_token_file
from scaling.errors import DataError
from scaling.safe import printable

log = logging.getLogger(__name__)

CACHE_VERSION = 1
"""Bump when the tokenization or split rule changes, so stale caches are not reused."""
VAL_WINDOWS_SEED = 20240501
"""Fixed seed of the evaluation windows: the same windows for every run of every sweep."""
_SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__"}
SUBSET_SEED = 20230525
"""Fixed seed of the unique-token subsets: every run with the same U_D on the same corpus trains on the same tokens."""
SUBSET_BLOCK_TOKENS = 4096
"""The unit of a unique subset: contiguous blocks of the training split this long (the last block of the split,
and the last block taken, may be shorter)."""


@dataclass
class Corpus:
    """Train and held-out token arrays (np.memmap), plus what they were made from."""

    train: np.ndarray
    val: np.ndarray
    fingerprint: str
    """Hash of the tokenized content (train and val), stable across machines and file mtimes."""
    source: str
    description: str

    @property
    def n_train_tokens(self) -> int:
        return int(len(self.train))

    @property
    def n_val_tokens(self) -> int:
        return int(len(self.val))


def data_warnings(n_tokens: int, val_tokens: int, n_train_tokens: int, n_val_tokens: int, source: str) -> list[str]:
    """One line per silent data problem of a run: a token budget that repeats the training split (how many
    epochs), a held-out split smaller than the val_tokens its evaluation asks for."""
    out = []
    if n_train_tokens and n_tokens > n_train_tokens:  # (a unique-subset run repeats by design: not called for it)
        out.append(f"{source}: a budget of {n_tokens:,} tokens repeats the {n_train_tokens:,}-token training split "
                   f"{n_tokens / n_train_tokens:.1f} times (epochs > 1: the loss is no longer on unseen data)")
    if n_val_tokens < val_tokens:
        out.append(f"{source}: the held-out split has {n_val_tokens:,} tokens, fewer than [data].val_tokens = "
                   f"{val_tokens:,}: the validation loss averages over {n_val_tokens:,} only")
    return out


def cache_dir() -> Path:
    return Path(os.environ.get("SCALING_CACHE") or Path.home() / ".cache" / "scaling")


def load_corpus(data_cfg: DataConfig, seq_len: int | None = None) -> Corpus:
    """Tokenize (or reuse the cache of) data_cfg.source and split it; DataError on any problem.

    With seq_len given, each split must hold at least one (seq_len + 1)-token window.
    """
    source = data_cfg.source
    if not is_token_file(source) and data_cfg.vocab_size != BYTE_VOCAB:  # byte ids >= vocab_size: IndexError
        raise DataError(f"{source}: [data].vocab_size = {data_cfg.vocab_size}: must be {BYTE_VOCAB} for "
                        f"byte-level text")
    if source == "stdlib":
        root = Path(sysconfig.get_paths()["stdlib"])
        files = _list_files(root, suffix=".py")
        corpus = _load_text(root, files, data_cfg, label="stdlib")
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise DataError(f"{path}: data source not found (give \"stdlib\", a text file or folder, or a .bin)")
        if path.is_file() and is_token_file(str(path)):  # `.bin` in any case: a `.BIN` is no text file
            corpus = _load_bin(path, data_cfg)
        elif path.is_file():
            corpus = _load_text(path.parent, [path.name], data_cfg, label=str(path))
        else:
            files = _list_files(path)
            tokens = [f for f in files if is_token_file(f)]
            if tokens:  # its uint16 ids would be read as bytes, mixed with the text
                raise DataError(f"{path}: folder of text files holds {len(tokens)} token file(s) such as "
                                f"{printable(tokens[0])}; give one .bin file as [data].source, or move it out")
            corpus = _load_text(path, files, data_cfg, label=str(path))
    if seq_len is not None:
        for name, split in (("train", corpus.train), ("validation", corpus.val)):
            if len(split) < seq_len + 1:
                raise DataError(f"{source}: {name} split has {len(split)} tokens, fewer than one "
                                f"sequence of seq_len + 1 = {seq_len + 1}")
    return corpus


def _list_files(root: Path, suffix: str = "") -> list[str]:
    """Relative paths (posix) of the regular files under root, sorted; hidden and cache folders skipped, and
    anything that is not a regular file (a FIFO would block the read forever, a device never end) skipped with
    a warning. A name that is not UTF-8 (a Latin-1 archive) is kept as Python keeps it (its bytes escaped as
    surrogates, PEP 383): the files are read like any other and the split hashes the name's original bytes."""
    rel = []
    skipped = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS and not d.startswith(".")]
        for name in filenames:
            if name.startswith(".") or not name.endswith(suffix):
                continue
            full = os.path.join(dirpath, name)
            try:
                regular = stat.S_ISREG(os.stat(full).st_mode)
            except OSError:  # a dangling link
                regular = False
            if not regular:
                skipped.append(full)
                continue
            rel.append(Path(dirpath, name).relative_to(root).as_posix())
    if skipped:
        log.warning("%s: skipped %d entries that are not regular files (FIFOs, devices, dangling links), e.g. %s",
                    printable(root), len(skipped), printable(skipped[0]))
    return sorted(rel)


def _path_hash(rel_path: str) -> float:
    """A stable number in [0, 1) from a relative path (not Python's hash(), which is salted per process).
    Hashes the name's bytes on disk: its UTF-8 for a UTF-8 name, the original bytes for any other."""
    return int.from_bytes(hashlib.sha1(os.fsencode(rel_path)).digest()[:8], "big") / 2.0**64


def split_files(files: list[str], val_fraction: float) -> tuple[list[str], list[str]]:
    """Whole files to train or validation by a hash of their relative path, so nothing leaks between
    splits and the split survives files being added elsewhere. At least one file is held out when
    there are two or more (small folders would otherwise have no validation set)."""
    val = [f for f in files if _path_hash(f) < val_fraction]
    if not val and len(files) >= 2:
        val = [min(files, key=_path_hash)]
    val_set = set(val)
    return [f for f in files if f not in val_set], val


def _load_text(root: Path, files: list[str], cfg: DataConfig, label: str) -> Corpus:
    if not files:
        raise DataError(f"{label}: no files to read (empty corpus)")
    stats = []
    for rel in files:
        st = os.stat(root / rel)
        stats.append((rel, st.st_size, st.st_mtime_ns))
    if sum(size for _, size, _ in stats) == 0:
        raise DataError(f"{label}: all {len(files)} files are empty (empty corpus)")
    key = _key({"kind": "text", "root": str(root.resolve()), "files": stats,
                "val_fraction": cfg.val_fraction, "version": CACHE_VERSION})
    cached = _open_cache(key, np.uint8, label)
    if cached is not None:
        return cached

    if len(files) == 1:
        # One file cannot be split by files: hold out its tail, like a .bin.
        data = np.frombuffer((root / files[0]).read_bytes(), dtype=np.uint8)
        n_val = int(len(data) * cfg.val_fraction)
        train, val = data[: len(data) - n_val], data[len(data) - n_val:]
        n_files = "1 file, tail held out"
    else:
        train_files, val_files = split_files(files, cfg.val_fraction)
        train, val = (np.frombuffer(b"".join((root / f).read_bytes() for f in part), dtype=np.uint8)
                      for part in (train_files, val_files))
        n_files = f"{len(train_files)} train + {len(val_files)} val files"
    return _write_cache(key, train, val, label, f"{label} ({n_files}, bytes)")


def _load_bin(path: Path, cfg: DataConfig) -> Corpus:
    st = path.stat()
    if st.st_size == 0:
        raise DataError(f"{path}: empty token file (empty corpus)")
    if st.st_size % 2:
        raise DataError(f"{path}: {st.st_size} bytes is not a whole number of uint16 tokens")
    # The file itself is the cache; the meta file only records that its ids were checked.
    key = _key({"kind": "bin", "path": str(path.resolve()), "size": st.st_size, "mtime": st.st_mtime_ns,
                "vocab_size": cfg.vocab_size, "version": CACHE_VERSION})
    meta_path = cache_dir() / f"{key}.json"
    tokens = np.memmap(path, dtype=np.uint16, mode="r")
    meta = _read_meta(meta_path)
    if meta is None:
        digest = hashlib.sha256()
        for start in range(0, len(tokens), 1 << 24):  # chunks bound memory on big files
            chunk = np.asarray(tokens[start:start + (1 << 24)])
            bad = chunk >= cfg.vocab_size
            if bad.any():
                i = start + int(np.argmax(bad))
                raise DataError(f"{path}: token id {int(tokens[i])} at position {i} is not below "
                                f"[data].vocab_size = {cfg.vocab_size}")
            digest.update(chunk.tobytes())
        meta = {"fingerprint": digest.hexdigest()[:16]}
        meta_path.parent.mkdir(parents=True, exist_ok=True)  # a .bin may be the first corpus ever loaded
        _write_atomic(meta_path, json.dumps(meta).encode())
    n_val = int(len(tokens) * cfg.val_fraction)
    return Corpus(train=tokens[: len(tokens) - n_val], val=tokens[len(tokens) - n_val:],
                  fingerprint=meta["fingerprint"], source=str(path),
                  description=f"{path} (uint16 tokens, tail {cfg.val_fraction:g} held out)")


@dataclass(frozen=True)
class Subset:
    """The tokens a run with [grid].unique_tokens trains on, and which blocks of the training split they are."""

    tokens: np.ndarray
    starts: np.ndarray
    """Start offsets in the training split of the blocks taken, in the order they are concatenated."""
    lengths: np.ndarray
    fingerprint: str
    """sha256 of the subset's tokens, first 16 hex digits."""


def unique_subset(train: np.ndarray, unique_tokens: int) -> Subset:
    """The first `unique_tokens` tokens of the training split's SUBSET_BLOCK_TOKENS-long blocks taken in one
    fixed seeded order (SUBSET_SEED), the last block cut to size, concatenated in that order.

    Deterministic and source-agnostic (text folders, `.bin` files and stdlib are all a flat training split);
    drawn from the training split only, so no held-out token is ever inside; nested (a smaller U_D takes a
    prefix of a larger one's blocks). DataError when U_D is not in [1, len(train)]."""
    n = int(len(train))
    if not 1 <= unique_tokens <= n:
        raise DataError(f"unique_tokens = {unique_tokens:,}: must be in [1, {n:,}] (the training split's tokens)")
    n_blocks = -(-n // SUBSET_BLOCK_TOKENS)
    order = np.random.default_rng(SUBSET_SEED).permutation(n_blocks)
    block_starts = order * SUBSET_BLOCK_TOKENS
    block_lengths = np.minimum(SUBSET_BLOCK_TOKENS, n - block_starts)
    taken = int(np.searchsorted(np.cumsum(block_lengths), unique_tokens)) + 1  # blocks up to the one reaching U_D
    starts, lengths = block_starts[:taken].copy(), block_lengths[:taken].copy()
    lengths[-1] -= int(lengths.sum()) - unique_tokens
    tokens = np.concatenate([np.asarray(train[a:a + k]) for a, k in zip(starts, lengths)])
    return Subset(tokens=tokens, starts=starts, lengths=lengths,
                  fingerprint=hashlib.sha256(tokens.tobytes()).hexdigest()[:16])


def _key(obj: object) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:20]


def _read_meta(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _open_cache(key: str, dtype: type, label: str) -> Corpus | None:
    """The cached corpus, or None; the meta file is written last, so its presence means complete."""
    d = cache_dir()
    meta = _read_meta(d / f"{key}.json")
    if meta is None:
        return None
    try:
        train, val = (np.memmap(d / f"{key}.{split}.bin", dtype=dtype, mode="r") if meta[f"n_{split}"]
                      else np.zeros(0, dtype=dtype) for split in ("train", "val"))
    except (FileNotFoundError, ValueError, KeyError):
        return None  # the cache was partly deleted: rebuild it
    if len(train) != meta["n_train"] or len(val) != meta["n_val"]:
        return None
    return Corpus(train=train, val=val, fingerprint=meta["fingerprint"], source=label,
                  description=meta["description"])


def _write_cache(key: str, train: np.ndarray, val: np.ndarray, label: str, description: str) -> Corpus:
    d = cache_dir()
    d.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(train.tobytes())
    digest.update(b"\0val\0")
    digest.update(val.tobytes())
    description = f"{description}: {len(train):,} train / {len(val):,} val tokens"
    for split, arr in (("train", train), ("val", val)):
        _write_atomic(d / f"{key}.{split}.bin", arr.tobytes())
    meta = {"fingerprint": digest.hexdigest()[:16], "n_train": len(train), "n_val": len(val),
            "description": description}
    _write_atomic(d / f"{key}.json", json.dumps(meta).encode())
    log.info("cached %s in %s", description, d)
    corpus = _open_cache(key, train.dtype.type, label)
    assert corpus is not None
    return corpus


def _write_atomic(path: Path, data: bytes) -> None:
    from scaling.results import atomic_path  # a full disk: StorageError naming the path, no temp file left

    with atomic_path(path, "wb") as f:
        f.write(data)


def _windows(tokens: np.ndarray, starts: np.ndarray, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    buf = tokens[starts[:, None] + np.arange(seq_len + 1)]  # (B, T + 1), one gather from the memmap
    buf = torch.from_numpy(buf.astype(np.int64))
    return buf[:, :-1].contiguous(), buf[:, 1:].contiguous()  # inputs (B, T), next-token targets (B, T)


def get_batch(tokens: np.ndarray, step: int, batch_size: int, seq_len: int,
              seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows chosen by (seed, step) alone, so resuming at step k replays the same data."""
    n_starts = len(tokens) - seq_len
    if n_starts < 1:
        raise DataError(f"split of {len(tokens)} tokens is shorter than one sequence (seq_len + 1 = {seq_len + 1})")
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, n_starts, size=batch_size)
    return _windows(tokens, starts, seq_len)


def val_windows(corpus: Corpus, seq_len: int, val_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ceil(val_tokens / seq_len) fixed held-out windows, the same for every run with this seq_len."""
    n_starts = len(corpus.val) - seq_len
    if n_starts < 1:
        raise DataError(f"{corpus.source}: validation split has {len(corpus.val)} tokens, fewer than one "
                        f"sequence of seq_len + 1 = {seq_len + 1}")
    n_windows = max(1, math.ceil(val_tokens / seq_len))
    rng = np.random.default_rng([VAL_WINDOWS_SEED, seq_len])
    starts = np.sort(rng.integers(0, n_starts, size=n_windows))  # sorted: memmap reads in order
    return _windows(corpus.val, starts, seq_len)
