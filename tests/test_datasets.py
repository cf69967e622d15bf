"""The dataset layer: registry, canonical files, digits, MNIST via torchvision, CIFAR-10 archive reader."""

from __future__ import annotations

import hashlib
import io
import pickle
import shutil
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
from torchvision.datasets import MNIST

from advprune import datasets
from advprune.datasets import (
    DATASETS,
    CanonicalFileError,
    canonical_path,
    file_sha256,
    get_dataset,
    load_canonical,
    prepare,
    read_cifar10_archive,
)

DIGITS = ("digits-mnist", "digits-cifar")


def _shared_file(shared_dir: Path, relative: str) -> Path:
    path = shared_dir / "data" / relative
    if not path.exists():
        pytest.skip(f"{path} not found")
    return path


def _save(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def _valid_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (6, 8, 8, 1), dtype=np.uint8),
        "y_train": np.arange(6, dtype=np.int64) % 10,
        "x_test": rng.integers(0, 256, (3, 8, 8, 1), dtype=np.uint8),
        "y_test": np.arange(3, dtype=np.uint8),
    }


# --- registry -----------------------------------------------------------------------------------------------------


def test_registry_entries_and_unknown_name():
    assert set(DATASETS) == {"digits-mnist", "digits-cifar", "mnist", "cifar10"}
    assert get_dataset("cifar10").image_shape == (32, 32, 3)
    assert canonical_path("data", "mnist") == Path("data/mnist.npz")
    with pytest.raises(ValueError, match=r"'svhn'.*cifar10, digits-cifar, digits-mnist, mnist"):
        get_dataset("svhn")


def test_file_sha256_matches_hashlib(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(b"x" * 3_000_000)  # spans several chunks
    assert file_sha256(path) == hashlib.sha256(b"x" * 3_000_000).hexdigest()


# --- digits -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DIGITS)
def test_digits_prepare(tmp_path, name):
    path = prepare(name, tmp_path)
    assert path == tmp_path / f"{name}.npz"
    arrays = load_canonical(path, get_dataset(name))
    assert arrays.x_train.shape == (1437, 8, 8, 1) and arrays.x_test.shape == (360, 8, 8, 1)
    assert arrays.x_train.dtype == np.uint8 and arrays.y_train.dtype == np.int64
    assert arrays.x_train.min() == 0 and arrays.x_train.max() == 255
    # 0..16 scaled by round(v * 255 / 16): only these 17 values can occur.
    assert set(np.unique(np.concatenate([arrays.x_train, arrays.x_test]))) <= {round(v * 255 / 16) for v in range(17)}
    for y in (arrays.y_train, arrays.y_test):
        assert set(np.unique(y)) == set(range(10))  # stratified: every class in both splits
    # Stratified: each class's share of the test split is its share of the whole, to within one image.
    counts_all = np.bincount(np.concatenate([arrays.y_train, arrays.y_test]))
    assert np.all(np.abs(np.bincount(arrays.y_test) - counts_all * 0.2) <= 1)


def test_digits_variants_share_pixels_and_are_deterministic(tmp_path):
    first = [prepare(name, tmp_path / "a") for name in DIGITS]
    again = prepare("digits-mnist", tmp_path / "b")
    assert again.read_bytes() == first[0].read_bytes()  # same bytes, not just the same arrays
    a, b = (load_canonical(p) for p in first)
    for key in datasets.CANONICAL_KEYS:
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))


def test_prepare_is_idempotent(tmp_path):
    path = prepare("digits-mnist", tmp_path)
    mtime = path.stat().st_mtime_ns
    assert prepare("digits-mnist", tmp_path) == path
    assert path.stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir()] == ["digits-mnist.npz"]  # no temporary file left behind


def test_digits_refuse_a_source(tmp_path):
    with pytest.raises(ValueError, match="takes no source"):
        prepare("digits-mnist", tmp_path, source=tmp_path)


# --- bad canonical files ------------------------------------------------------------------------------------------


def test_load_missing_key(tmp_path):
    arrays = _valid_arrays()
    del arrays["y_test"]
    path = _save(tmp_path / "bad.npz", **arrays)
    with pytest.raises(CanonicalFileError, match=r"bad\.npz.*missing key.*y_test"):
        load_canonical(path)


def test_load_wrong_dtype(tmp_path):
    arrays = _valid_arrays()
    arrays["x_train"] = arrays["x_train"].astype(np.float32) / 255
    path = _save(tmp_path / "bad.npz", **arrays)
    with pytest.raises(CanonicalFileError, match=r"bad\.npz: x_train has dtype float32, expected uint8"):
        load_canonical(path)


def test_load_length_mismatch(tmp_path):
    arrays = _valid_arrays()
    arrays["y_test"] = arrays["y_test"][:2]
    path = _save(tmp_path / "bad.npz", **arrays)
    with pytest.raises(CanonicalFileError, match=r"bad\.npz: x_test has 3 images but y_test has 2 labels"):
        load_canonical(path)


def test_load_checks_shape_and_labels_against_dataset(tmp_path):
    arrays = _valid_arrays()
    path = _save(tmp_path / "ok.npz", **arrays)
    assert load_canonical(path, get_dataset("digits-mnist")).y_test.dtype == np.int64
    with pytest.raises(CanonicalFileError, match=r"ok\.npz: x_train images are \(8, 8, 1\), expected \(28, 28, 1\)"):
        load_canonical(path, get_dataset("mnist"))
    arrays["y_train"][-1] = 10
    path = _save(tmp_path / "labels.npz", **arrays)
    with pytest.raises(CanonicalFileError, match=r"labels\.npz: y_train has labels in \[0, 10\], expected 0\.\.9"):
        load_canonical(path, get_dataset("digits-mnist"))


def test_load_reads_3d_images_as_one_channel(tmp_path):
    arrays = _valid_arrays()
    arrays["x_train"], arrays["x_test"] = arrays["x_train"][..., 0], arrays["x_test"][..., 0]
    loaded = load_canonical(_save(tmp_path / "grey.npz", **arrays), get_dataset("digits-mnist"))
    assert loaded.x_train.shape == (6, 8, 8, 1)


def test_prepare_refuses_corrupted_canonical_file(tmp_path):
    path = prepare("digits-mnist", tmp_path)
    path.write_bytes(path.read_bytes()[:1000])  # truncated, as by a full disk
    with pytest.raises(CanonicalFileError, match=r"(?s)digits-mnist\.npz: cannot be read.*Delete .*digits-mnist\.npz"):
        prepare("digits-mnist", tmp_path)


def test_prepare_refuses_mismatched_canonical_file(tmp_path):
    _save(tmp_path / "mnist.npz", **_valid_arrays())  # 8x8 images where MNIST's are 28x28
    with pytest.raises(CanonicalFileError, match=r"(?s)mnist\.npz: x_train images are .*Delete .*mnist\.npz"):
        prepare("mnist", tmp_path)


# --- MNIST --------------------------------------------------------------------------------------------------------


def test_mnist_through_torchvision(tmp_path, shared_dir):
    source = _shared_file(shared_dir, "mnist-raw")
    path = prepare("mnist", tmp_path, source=source)
    assert sorted(p.name for p in (tmp_path / "MNIST" / "raw").glob("*.gz")) == sorted(n for n, _ in MNIST.resources)
    arrays = load_canonical(path, get_dataset("mnist"))
    assert arrays.x_train.shape == (60000, 28, 28, 1) and arrays.x_test.shape == (10000, 28, 28, 1)
    # Label counts from shared/data/PROVENANCE.md.
    assert np.bincount(arrays.y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(arrays.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    # Pixel-exact: the idx3 header plus our pixels hash to the published MD5 of the uncompressed original.
    idx3 = struct.pack(">IIII", 0x803, 60000, 28, 28) + arrays.x_train.tobytes()
    assert hashlib.md5(idx3).hexdigest() == "6bbc9ace898e44ae57da46a324031adb"


def test_mnist_refuses_corrupted_source(tmp_path, shared_dir):
    source = _shared_file(shared_dir, "mnist-raw")
    bad = tmp_path / "source"
    shutil.copytree(source, bad)
    target = bad / "train-labels-idx1-ubyte.gz"
    data = bytearray(target.read_bytes())
    data[100] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte\.gz: MD5 .* does not match torchvision's"):
        prepare("mnist", tmp_path / "data", source=bad)
    assert not (tmp_path / "data" / "MNIST").exists()  # nothing was copied
    assert not (tmp_path / "data" / "mnist.npz").exists()


# --- CIFAR-10 -----------------------------------------------------------------------------------------------------


def _tiny_cifar_archive(path: Path, per_batch: int = 2) -> tuple[Path, str, dict[str, np.ndarray]]:
    """An archive in the official layout, `per_batch` images per batch; returns it, its MD5 and the raw batches."""
    rng = np.random.default_rng(1)
    raw = {}
    with tarfile.open(path, "w:gz") as tar:
        for i, batch in enumerate(datasets.CIFAR10_BATCHES):
            data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
            labels = [(i + j) % 10 for j in range(per_batch)]
            raw[batch] = data
            entry = {"batch_label": batch, "labels": labels, "data": data, "filenames": ["x.png"] * per_batch}
            blob = pickle.dumps(entry)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{batch}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
        meta = pickle.dumps({"label_names": [str(k) for k in range(10)]})
        info = tarfile.TarInfo("cifar-10-batches-py/batches.meta")
        info.size = len(meta)
        tar.addfile(info, io.BytesIO(meta))
    return path, hashlib.md5(path.read_bytes()).hexdigest(), raw


def test_read_cifar10_archive(tmp_path):
    path, md5, raw = _tiny_cifar_archive(tmp_path / "cifar-10-python.tar.gz")
    arrays = read_cifar10_archive(path, md5)
    assert arrays.x_train.shape == (10, 32, 32, 3) and arrays.x_test.shape == (2, 32, 32, 3)
    assert arrays.x_train.dtype == np.uint8 and arrays.y_train.dtype == np.int64
    assert arrays.y_train.tolist() == [0, 1, 1, 2, 2, 3, 3, 4, 4, 5] and arrays.y_test.tolist() == [5, 6]
    # Rows are CHW-flattened: channel c, row r, column w sits at c*1024 + r*32 + w.
    first = raw["data_batch_1"][0]
    assert arrays.x_train[0, 0, 1].tolist() == [first[1], first[1024 + 1], first[2048 + 1]]
    last = raw["test_batch"][1]
    assert arrays.x_test[1, 31, 30, 2] == last[2 * 1024 + 31 * 32 + 30]
    expected = np.concatenate([raw[b] for b in datasets.CIFAR10_BATCHES[:5]]).reshape(-1, 3, 32, 32)
    np.testing.assert_array_equal(arrays.x_train, expected.transpose(0, 2, 3, 1))


def test_read_cifar10_archive_refuses_wrong_md5(tmp_path):
    path, md5, _ = _tiny_cifar_archive(tmp_path / "cifar-10-python.tar.gz")
    with pytest.raises(ValueError, match=rf"cifar-10-python\.tar\.gz: MD5 {md5} does not match the expected 0{{32}}"):
        read_cifar10_archive(path, "0" * 32)
    # prepare checks a local tarball against the official MD5, which a tiny archive cannot match.
    with pytest.raises(ValueError, match=rf"expected {datasets.CIFAR10_MD5}"):
        prepare("cifar10", tmp_path / "data", source=path)


def test_read_cifar10_archive_refuses_incomplete_layout(tmp_path):
    path = tmp_path / "partial.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        blob = pickle.dumps({"labels": [0], "data": np.zeros((1, 3072), np.uint8)})
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
    with pytest.raises(ValueError, match=r"partial\.tar\.gz: missing .*test_batch"):
        read_cifar10_archive(path, hashlib.md5(path.read_bytes()).hexdigest())


def test_shared_cifar10_is_canonical(tmp_path, shared_dir):
    source = _shared_file(shared_dir, "cifar10.npz")
    path = prepare("cifar10", tmp_path, source=source)  # validates the source, then copies it
    assert file_sha256(path) == file_sha256(source)
    arrays = load_canonical(path, get_dataset("cifar10"))
    assert arrays.x_train.shape == (50000, 32, 32, 3) and arrays.x_test.shape == (10000, 32, 32, 3)
    assert np.bincount(arrays.y_train).tolist() == [5000] * 10 and np.bincount(arrays.y_test).tolist() == [1000] * 10
    # Canonical order and HWC RGB, per PROVENANCE.md: the first labels, and train image 0's first and last values
    # in the pickle's CHW row (red row 0 starts 59, 43, 50; blue row 31 ends 140, 84, 72).
    assert arrays.y_train[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert arrays.y_test[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert arrays.x_train[0, 0, :3, 0].tolist() == [59, 43, 50]
    assert arrays.x_train[0, 31, -3:, 2].tolist() == [140, 84, 72]
