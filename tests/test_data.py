import os
import sysconfig
import time
from pathlib import Path

import numpy as np
import pytest

from scaling.config import DataConfig
from scaling.data import get_batch, load_corpus, split_files, val_windows
from scaling.errors import DataError


def test_text_folder_split_is_by_whole_file_and_deterministic(text_corpus: Path) -> None:
    files = sorted(p.name for p in text_corpus.iterdir())
    train_files, val_files = split_files(files, 0.1)
    assert val_files and train_files
    assert not set(train_files) & set(val_files)
    assert sorted(train_files + val_files) == files
    assert split_files(files, 0.1) == (train_files, val_files)
    # Adding a file elsewhere never moves an existing file to the other split.
    train2, val2 = split_files(files + ["zzz_new.py"], 0.1)
    assert set(val_files) <= set(val2) and set(train_files) <= set(train2)

    corpus = load_corpus(DataConfig(source=str(text_corpus), val_fraction=0.1))
    val_bytes = b"".join((text_corpus / f).read_bytes() for f in val_files)
    train_bytes = b"".join((text_corpus / f).read_bytes() for f in train_files)
    assert corpus.val.tobytes() == val_bytes
    assert corpus.train.tobytes() == train_bytes
    assert corpus.n_train_tokens + corpus.n_val_tokens == sum(f.stat().st_size for f in text_corpus.iterdir())


def test_cache_is_reused_and_keyed_by_the_files(tmp_path: Path) -> None:
    folder = tmp_path / "texts"
    folder.mkdir()
    for i in range(6):
        (folder / f"f{i}.txt").write_text(f"file {i} " * 200)
    cfg = DataConfig(source=str(folder))
    first = load_corpus(cfg)
    cache_files = {p: p.stat().st_mtime_ns for p in Path(os.environ["SCALING_CACHE"]).glob("*")}
    t0 = time.perf_counter()
    second = load_corpus(cfg)
    assert time.perf_counter() - t0 < 0.2
    assert isinstance(second.train, np.memmap)
    assert {p: p.stat().st_mtime_ns for p in cache_files} == cache_files  # nothing rewritten
    assert second.fingerprint == first.fingerprint
    np.testing.assert_array_equal(second.train, first.train)

    (folder / "f0.txt").write_text("changed " * 300)
    third = load_corpus(cfg)
    assert third.fingerprint != first.fingerprint


def test_single_text_file_holds_out_its_tail(tmp_path: Path) -> None:
    path = tmp_path / "book.txt"
    path.write_bytes(bytes(range(256)) * 40)
    corpus = load_corpus(DataConfig(source=str(path), val_fraction=0.25))
    assert corpus.n_val_tokens == 2560
    assert corpus.train.tobytes() + corpus.val.tobytes() == path.read_bytes()


def test_bin_source_and_bad_token_id(tmp_path: Path) -> None:
    path = tmp_path / "tokens.bin"
    ids = (np.arange(10_000) % 1000).astype(np.uint16)
    ids.tofile(path)
    corpus = load_corpus(DataConfig(source=str(path), vocab_size=1000, val_fraction=0.1))
    assert corpus.n_val_tokens == 1000
    np.testing.assert_array_equal(np.concatenate([corpus.train, corpus.val]), ids)

    ids[1234] = 1000
    bad = tmp_path / "bad.bin"
    ids.tofile(bad)
    with pytest.raises(DataError, match=r"bad\.bin: token id 1000 at position 1234"):
        load_corpus(DataConfig(source=str(bad), vocab_size=1000))


def test_missing_and_empty_sources(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nowhere: data source not found"):
        load_corpus(DataConfig(source=str(tmp_path / "nowhere")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty corpus"):
        load_corpus(DataConfig(source=str(tmp_path / "empty")))
    (tmp_path / "blank").mkdir()
    (tmp_path / "blank" / "a.txt").write_text("")
    (tmp_path / "blank" / "b.txt").write_text("")
    with pytest.raises(DataError, match="blank: all 2 files are empty"):
        load_corpus(DataConfig(source=str(tmp_path / "blank")))
    (tmp_path / "small").mkdir()
    (tmp_path / "small" / "a.txt").write_text("x" * 1000)
    (tmp_path / "small" / "b.txt").write_text("y" * 10)
    with pytest.raises(DataError, match="split has 10 tokens, fewer than one sequence"):
        load_corpus(DataConfig(source=str(tmp_path / "small"), val_fraction=0.1), seq_len=32)


def test_batches_depend_only_on_seed_and_step(text_corpus: Path) -> None:
    corpus = load_corpus(DataConfig(source=str(text_corpus)))
    x, y = get_batch(corpus.train, step=5, batch_size=4, seq_len=16, seed=1)
    assert x.shape == y.shape == (4, 16)
    assert (x[:, 1:] == y[:, :-1]).all()  # targets are the inputs shifted by one token
    x2, y2 = get_batch(corpus.train, step=5, batch_size=4, seq_len=16, seed=1)
    assert (x == x2).all() and (y == y2).all()
    assert not (get_batch(corpus.train, step=6, batch_size=4, seq_len=16, seed=1)[0] == x).all()
    assert not (get_batch(corpus.train, step=5, batch_size=4, seq_len=16, seed=2)[0] == x).all()


def test_val_windows_are_fixed(text_corpus: Path) -> None:
    corpus = load_corpus(DataConfig(source=str(text_corpus)))
    x, y = val_windows(corpus, seq_len=32, val_tokens=1000)
    assert x.shape == (32, 32)  # ceil(1000 / 32) windows
    x2, _ = val_windows(corpus, seq_len=32, val_tokens=1000)
    assert (x == x2).all()


def test_stdlib_source(tmp_path: Path) -> None:
    corpus = load_corpus(DataConfig(source="stdlib"))
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    assert corpus.n_train_tokens > 1_000_000 and corpus.n_val_tokens > 10_000
    assert corpus.train.dtype == np.uint8
    t0 = time.perf_counter()
    again = load_corpus(DataConfig(source="stdlib"))
    assert time.perf_counter() - t0 < 0.2  # cached: a job's data setup is a file walk and a memmap
    assert again.fingerprint == corpus.fingerprint
    assert "stdlib" in corpus.description and str(stdlib) not in corpus.fingerprint
