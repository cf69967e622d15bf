"""Datasets: registry, official downloads with their checksums, conversion to the canonical `.npz`, loading.

Every step after `prepare` reads one canonical file per dataset, `<root>/<name>.npz`, holding
`x_train` uint8 [N, H, W, C] (HWC; a 3-D [N, H, W] array is read as C = 1), `y_train` integer [N],
`x_test` and `y_test` likewise; an offline copy of CIFAR-10 saved in that layout drops in as it is.

A new dataset joins with one `prepare(root, source) -> Path` function (ending in `write_canonical`) and one
`DATASETS` entry, or from outside the package through `register_dataset` (see advprune.plugins).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import pickle
import re
import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from advprune.runtime import RunFailure, atomic_path

if TYPE_CHECKING:  # torch is imported where it is used: the workflow reads the registry without paying for it
    import torch

CANONICAL_KEYS = ("x_train", "y_train", "x_test", "y_test")

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"  # the official archive's, as torchvision's CIFAR10 lists it
CIFAR10_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    image_shape: tuple[int, int, int]  # (H, W, C)
    # (root, source) -> canonical path; `source` is an optional local copy of the data (see `prepare`).
    prepare: Callable[[Path, Path | None], Path]
    description: str
    n_test: int | None = None  # test-set size where fixed: a config asking for more AutoAttack points fails early


@dataclass(frozen=True)
class DatasetArrays:
    x_train: np.ndarray  # uint8 [N, H, W, C]
    y_train: np.ndarray  # int64 [N]
    x_test: np.ndarray
    y_test: np.ndarray


class CanonicalFileError(ValueError):
    """A canonical dataset file that is missing a key, has the wrong types or shapes, or cannot be read."""


class DownloadError(RunFailure):
    """An official file could not be fetched (no network, a mirror down): the message says how to proceed offline."""


def images_to_device(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """Canonical uint8 [N,H,W,C] -> uint8 [N,C,H,W], contiguous, on the device (a quarter of float32's memory)."""
    import torch

    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(device)


def get_dataset(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}") from None


def canonical_path(root: str | Path, name: str) -> Path:
    get_dataset(name)  # a typo fails here, not as a missing file later
    return Path(root) / f"{name}.npz"


def file_sha256(path: str | Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _validate(arrays: dict[str, np.ndarray], info: DatasetInfo | None, where: str) -> DatasetArrays:
    """Check the canonical layout and return it normalised (C axis present, int64 labels)."""
    missing = [key for key in CANONICAL_KEYS if key not in arrays]
    if missing:
        raise CanonicalFileError(f"{where}: missing key(s) {missing}; a canonical file holds {list(CANONICAL_KEYS)}")
    out = {}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8:
            raise CanonicalFileError(f"{where}: x_{split} has dtype {x.dtype}, expected uint8 pixels 0..255")
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4:
            raise CanonicalFileError(f"{where}: x_{split} has shape {x.shape}, expected [N, H, W, C] or [N, H, W]")
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise CanonicalFileError(f"{where}: y_{split} must be a 1-D integer array, got {y.dtype} {y.shape}")
        if len(x) != len(y):
            raise CanonicalFileError(f"{where}: x_{split} has {len(x)} images but y_{split} has {len(y)} labels")
        if len(x) == 0:  # training divides by it, and AutoAttack needs a point
            raise CanonicalFileError(f"{where}: x_{split} has no images")
        if info is not None:
            if x.shape[1:] != info.image_shape:
                raise CanonicalFileError(
                    f"{where}: x_{split} images are {x.shape[1:]}, expected {info.image_shape} for {info.name}"
                )
            if len(y) and (y.min() < 0 or y.max() >= info.num_classes):
                raise CanonicalFileError(
                    f"{where}: y_{split} has labels in [{y.min()}, {y.max()}], "
                    f"expected 0..{info.num_classes - 1} for {info.name}"
                )
        out[f"x_{split}"], out[f"y_{split}"] = x, y.astype(np.int64)
    if out["x_train"].shape[1:] != out["x_test"].shape[1:]:
        raise CanonicalFileError(
            f"{where}: train images are {out['x_train'].shape[1:]} but test images are {out['x_test'].shape[1:]}"
        )
    return DatasetArrays(**out)


def check_every_class(arrays: DatasetArrays, info: DatasetInfo, where: str) -> None:
    """A model has one output per class of its dataset: a training set without some class is not that dataset (it
    trained a model with too few outputs, which AutoAttack then failed on)."""
    absent = sorted(set(range(info.num_classes)) - set(np.unique(arrays.y_train).tolist()))
    if absent:
        shown = ", ".join(map(str, absent[:10])) + (", ..." if len(absent) > 10 else "")
        raise CanonicalFileError(f"{where}: y_train has no example of class(es) {shown} of the "
                                 f"{info.num_classes} classes of {info.name}")


def load_canonical(path: str | Path, info: DatasetInfo | None = None) -> DatasetArrays:
    """Read and validate a canonical file; with `info`, also check image shape and label range."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: canonical dataset file not found (run `prepare` first)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files if key in CANONICAL_KEYS}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
        raise CanonicalFileError(f"{path}: cannot be read as an .npz file ({error})") from error
    return _validate(arrays, info, str(path))


def write_canonical(root: Path, name: str, arrays: DatasetArrays) -> Path:
    """Validate, then write atomically, in a byte-deterministic form (same arrays, same sha256). A registered
    dataset's `prepare` ends here."""
    info = get_dataset(name)
    arrays = _validate(vars(arrays), info, f"{name} (about to be written)")
    label_dtype = np.uint8 if info.num_classes <= 256 else np.int64
    payload = {
        "x_train": arrays.x_train,
        "y_train": arrays.y_train.astype(label_dtype),
        "x_test": arrays.x_test,
        "y_test": arrays.y_test.astype(label_dtype),
    }
    path = canonical_path(root, name)
    with atomic_path(path) as tmp:
        # The same zip layout np.savez writes, but with a fixed timestamp per entry: np.savez stamps the current time,
        # so two conversions of the same data would differ in bytes and in the sha256 recorded for provenance.
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for key, array in payload.items():
                entry = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                with zf.open(entry, "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.ascontiguousarray(array), allow_pickle=False)
    return path


def prepare(name: str, root: str | Path, source: str | Path | None = None) -> Path:
    """Convert dataset `name` once into `<root>/<name>.npz` and return that path.

    If the canonical file exists and loads, nothing is done (and `source` is not looked at). `source` is an optional
    local copy of the data: for `mnist` a folder with the four original gz files, for `cifar10` a canonical `.npz`
    or the official tarball; the digits variants ship with scikit-learn and take none.
    """
    info = get_dataset(name)
    path = canonical_path(root, name)
    if Path(root).exists() and not Path(root).is_dir():
        raise ValueError(f"{root}: the data root is a file, not a directory")
    if path.exists():
        try:
            load_canonical(path, info)
        except CanonicalFileError as error:
            raise CanonicalFileError(f"{error}\nDelete {path} to prepare {name} again.") from error
        return path
    Path(root).mkdir(parents=True, exist_ok=True)
    return info.prepare(Path(root), None if source is None else Path(source))


def _prepare_digits(name: str, root: Path, source: Path | None) -> Path:
    """scikit-learn's digits (1797 8x8 images, values 0..16), the offline stand-in for MNIST and CIFAR-10.

    Pixels become uint8 by round(v * 255 / 16) (the only tie, v = 8 -> 127.5, rounds to 128). The split is
    `train_test_split(test_size=0.2, random_state=0, stratify=y)`, kept in the order it returns: 1437 train,
    360 test, every class in both. All digits variants have the same pixels; they differ in training settings.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if source is not None:
        raise ValueError(f"{name} ships with scikit-learn and takes no source (got {source})")
    digits = load_digits()
    images = np.rint(digits.images * 255 / 16).astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int64)
    train, test = train_test_split(np.arange(len(labels)), test_size=0.2, random_state=0, stratify=labels)
    return write_canonical(root, name, DatasetArrays(images[train], labels[train], images[test], labels[test]))


def _md5(path: Path) -> str:
    from torchvision.datasets.utils import calculate_md5

    return calculate_md5(path)


def _prepare_mnist(root: Path, source: Path | None) -> Path:
    """MNIST from the four original gz files in `<root>/MNIST/raw`, each checked against torchvision's MD5 every time
    it is read (copied from `source` first, or downloaded when absent), then decoded by torchvision's own readers.

    The files torchvision extracts beside them are never trusted: an earlier run's extraction may have been damaged
    since, and torchvision reads an extracted file without checking it. They are extracted again from verified gz.
    """
    from torchvision.datasets import MNIST  # imported here: torchvision costs seconds, digits-only runs skip it
    from torchvision.datasets.mnist import read_image_file, read_label_file

    raw = root / "MNIST" / "raw"
    if source is not None:
        # Check every file before copying any, so a bad source leaves the raw folder as it was.
        for filename, md5 in MNIST.resources:
            if not (source / filename).is_file():
                raise FileNotFoundError(f"{source / filename}: not found; an MNIST source folder holds {filename}")
            _check_md5(source / filename, md5, "it is not the original MNIST file, refusing to use it")
        raw.mkdir(parents=True, exist_ok=True)
        for filename, _ in MNIST.resources:
            with atomic_path(raw / filename) as tmp:
                shutil.copyfile(source / filename, tmp)
    for filename, md5 in MNIST.resources:
        if (raw / filename).exists():
            _check_md5(raw / filename, md5, "delete it to download it again, or pass --source a folder of the "
                       "original files (train-images-idx3-ubyte.gz and the other three)")
        else:
            _download_mnist_file(raw, filename, md5)
    for filename, _ in MNIST.resources:
        with gzip.open(raw / filename) as compressed, atomic_path(raw / Path(filename).stem) as tmp:
            with tmp.open("wb") as extracted:
                shutil.copyfileobj(compressed, extracted)
    x_train, y_train, x_test, y_test = (
        reader(str(raw / f"{split}-{kind}")).numpy()
        for split in ("train", "t10k")
        for reader, kind in ((read_image_file, "images-idx3-ubyte"), (read_label_file, "labels-idx1-ubyte"))
    )
    return write_canonical(root, "mnist", DatasetArrays(x_train[..., None], y_train, x_test[..., None], y_test))


def _check_md5(path: Path, md5: str, advice: str) -> None:
    actual = _md5(path)
    if actual != md5:
        raise ValueError(f"{path}: MD5 {actual} does not match torchvision's {md5}; {advice}")


def _download_mnist_file(raw: Path, filename: str, md5: str) -> None:
    """One original gz file from torchvision's mirrors, MD5-checked by download_url."""
    from torchvision.datasets import MNIST
    from torchvision.datasets.utils import download_url

    errors = []
    for mirror in MNIST.mirrors:
        try:
            download_url(f"{mirror}{filename}", raw, filename, md5=md5)
            return
        except (OSError, RuntimeError) as error:  # URLError is an OSError
            errors.append(f"{mirror}: {' '.join(str(error).split())}")
    raise DownloadError(
        f"MNIST's {filename} could not be downloaded into {raw} ({'; '.join(errors)}); without internet, pass "
        "--source a folder holding the four original gz files (train-images-idx3-ubyte.gz, ...)"
    )


def read_cifar10_archive(tar_path: str | Path, md5: str) -> DatasetArrays:
    """Read the official `cifar-10-python.tar.gz` layout after checking the archive's MD5.

    Our own reader rather than torchvision's CIFAR10, which checks each batch against hard-coded MD5s: with the
    archive's checksum as a parameter, a test can feed a tiny archive in the official layout.
    """
    from torchvision.datasets.utils import check_integrity

    tar_path = Path(tar_path)
    if not tar_path.is_file():
        raise FileNotFoundError(f"{tar_path}: CIFAR-10 archive not found")
    if not check_integrity(tar_path, md5):
        raise ValueError(
            f"{tar_path}: MD5 {_md5(tar_path)} does not match the expected {md5}; "
            "the archive is corrupt or not the official one (delete it to download it again)"
        )
    wanted = {f"cifar-10-batches-py/{batch}": batch for batch in CIFAR10_BATCHES}
    batches = {}
    with tarfile.open(tar_path, "r:gz") as tar:
        for member in tar:  # one pass: seeking back in a gzip stream means decompressing it again
            if member.name in wanted:
                # Unpickling is safe here only because the archive's MD5 was checked above.
                batches[wanted[member.name]] = pickle.load(tar.extractfile(member), encoding="latin1")
    missing = [name for name in wanted if wanted[name] not in batches]
    if missing:
        raise ValueError(f"{tar_path}: missing {missing}; not the official CIFAR-10 python layout")

    def images_and_labels(names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        data = np.concatenate([np.asarray(batches[n]["data"], dtype=np.uint8) for n in names])
        labels = np.concatenate([np.asarray(batches[n]["labels"], dtype=np.int64) for n in names])
        # Each row is 3072 bytes: the red 32x32 plane, then green, then blue (CHW); the canonical order is HWC.
        return np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)), labels

    x_train, y_train = images_and_labels(CIFAR10_BATCHES[:5])
    x_test, y_test = images_and_labels(CIFAR10_BATCHES[5:])
    return DatasetArrays(x_train, y_train, x_test, y_test)


def _check_sizes(arrays: DatasetArrays, n_train: int, n_test: int, where: str) -> None:
    if (len(arrays.x_train), len(arrays.x_test)) != (n_train, n_test):
        raise CanonicalFileError(
            f"{where}: {len(arrays.x_train)} train / {len(arrays.x_test)} test images, expected {n_train} / {n_test}"
        )


def _prepare_cifar10(root: Path, source: Path | None) -> Path:
    """CIFAR-10 from a canonical `.npz` (copied as is once it validates), a local official tarball, or a download."""
    info = get_dataset("cifar10")
    if source is not None and source.suffix == ".npz":
        _check_sizes(load_canonical(source, info), 50000, 10000, str(source))
        path = canonical_path(root, "cifar10")
        with atomic_path(path) as tmp:
            shutil.copyfile(source, tmp)  # a byte copy keeps the source's sha256
        return path
    if source is None:
        from torchvision.datasets.utils import download_url

        try:
            download_url(CIFAR10_URL, root, CIFAR10_ARCHIVE, md5=CIFAR10_MD5)
        except (OSError, RuntimeError) as error:  # URLError is an OSError
            raise DownloadError(
                f"CIFAR-10 could not be downloaded from {CIFAR10_URL} into {root} ({' '.join(str(error).split())}); "
                "without internet, pass --source a canonical .npz (docs/method.md, Data) "
                "or the official tarball"
            ) from error
        source = root / CIFAR10_ARCHIVE
    arrays = read_cifar10_archive(source, CIFAR10_MD5)
    _check_sizes(arrays, 50000, 10000, str(source))
    return write_canonical(root, "cifar10", arrays)


DATASETS: dict[str, DatasetInfo] = {
    "digits-mnist": DatasetInfo(
        "digits-mnist", 10, (8, 8, 1), functools.partial(_prepare_digits, "digits-mnist"),
        "scikit-learn digits (offline) with MNIST's training settings", n_test=360,
    ),
    "digits-cifar": DatasetInfo(
        "digits-cifar", 10, (8, 8, 1), functools.partial(_prepare_digits, "digits-cifar"),
        "scikit-learn digits (offline) with CIFAR-10's training settings", n_test=360,
    ),
    "mnist": DatasetInfo(
        "mnist", 10, (28, 28, 1), _prepare_mnist, "MNIST, 60000 train / 10000 test, greyscale", n_test=10000
    ),
    "cifar10": DatasetInfo(
        "cifar10", 10, (32, 32, 3), _prepare_cifar10, "CIFAR-10, 50000 train / 10000 test, RGB", n_test=10000
    ),
}


def check_n_examples(name: str, n_examples: int) -> None:
    """AutoAttack's points against the test set, where its size is fixed: refused when the config is read, not when
    the first evaluation job runs."""
    info = DATASETS.get(name)
    if info is not None and info.n_test is not None and n_examples > info.n_test:
        raise ValueError(f"n_examples: {n_examples} is more than the {info.n_test} test points of {name}")


def register_dataset(info: DatasetInfo) -> None:
    """Add a dataset from outside the package (a plugin); it also needs settings (settings.register_dataset)."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", info.name):
        raise ValueError(f"dataset name {info.name!r} must be lowercase letters, digits and '-' (it is a path part)")
    if info.name in DATASETS:
        raise ValueError(f"dataset {info.name!r} is already registered")
    DATASETS[info.name] = info
