"""resnet_core.data: the built-in dataset, and torchvision's datasets read from files in their own formats.

The CIFAR-10 and MNIST files here are small ones written in the real formats (pickled batch dicts;
idx ubyte files), and downloads go through file:// URLs, so nothing needs a network.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import shutil
import tarfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F
from torchvision.datasets import CIFAR10, MNIST, FashionMNIST

from resnet_core.data import (
    BUILTIN_CLASSES,
    DATASETS,
    Dataset,
    DatasetUnavailable,
    builtin,
    channel_stats,
    dataset_present,
    default_data_dir,
    fetch_dataset,
    load_dataset,
)

ROOT = Path(__file__).resolve().parents[1]
CIFAR_NAMES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
CIFAR_LABELS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[str]:
    """Temporary files or folders of a download or an extraction that should never survive one."""
    return [p.name for p in folder.rglob("*") if p.name.endswith(".partial") or p.name.startswith(".extract-")]


# ----------------------------------------------------------------------------------------------
# The built-in dataset


def test_builtin_is_deterministic_for_a_seed() -> None:
    a, b = builtin(n_train=300, n_test=60, seed=3), builtin(n_train=300, n_test=60, seed=3)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.mean == b.mean and a.std == b.std
    other = builtin(n_train=300, n_test=60, seed=4)
    assert not torch.equal(a.x_train, other.x_train) and not torch.equal(a.x_test, other.x_test)


def test_builtin_shapes_dtypes_balance_and_statistics() -> None:
    d = builtin(n_train=500, n_test=120, seed=0)
    assert d.name == "builtin" and d.classes == BUILTIN_CLASSES and len(d.classes) == 10
    assert d.x_train.shape == (500, 3, 32, 32) and d.x_train.dtype == torch.uint8
    assert d.x_test.shape == (120, 3, 32, 32) and d.y_test.dtype == torch.int64
    assert d.input_size == (3, 32, 32) and d.num_classes == 10
    assert torch.bincount(d.y_train, minlength=10).tolist() == [50] * 10  # exactly balanced
    assert torch.bincount(d.y_test, minlength=10).tolist() == [12] * 10
    # The statistics are those of the [0, 1]-scaled training images, per channel.
    x = d.x_train.float() / 255
    assert d.mean == pytest.approx(x.mean((0, 2, 3)).tolist(), abs=1e-5)
    assert d.std == pytest.approx(x.std((0, 2, 3)).tolist(), abs=1e-4)
    assert all(0.2 < m < 0.8 for m in d.mean) and all(0.1 < s < 0.45 for s in d.std)
    assert d.x_train.float().std() > 40  # colourful images, not flat ones
    assert builtin(n_train=20, n_test=10, size=16).input_size == (3, 16, 16)


def test_builtin_test_set_does_not_depend_on_the_training_size() -> None:
    assert torch.equal(builtin(n_train=50, n_test=40).x_test, builtin(n_train=100, n_test=40).x_test)


def test_a_linear_model_on_raw_pixels_stays_far_below_a_resnet() -> None:
    """The shapes move, scale, turn and change colour: logistic regression on pixels cannot learn them.

    tests/test_training.py shows a tiny ResNet passing 70% on the same kind of data in seconds.
    """
    d = builtin(n_train=3000, n_test=1000, seed=0)
    x_train, x_test = (d.x_train.float() / 255).flatten(1), (d.x_test.float() / 255).flatten(1)  # (N, 3072)
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mu) / sd, (x_test - mu) / sd
    gen = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(x_train.shape[1], 10)
    opt = torch.optim.Adam(linear.parameters(), lr=1e-3, weight_decay=1e-4)
    for _ in range(20):
        perm = torch.randperm(len(x_train), generator=gen)
        for i in range(0, len(x_train), 250):
            idx = perm[i : i + 250]
            loss = F.cross_entropy(linear(x_train[idx]), d.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        train_acc = (linear(x_train).argmax(1) == d.y_train).float().mean().item()
        test_acc = (linear(x_test).argmax(1) == d.y_test).float().mean().item()
    assert train_acc > 0.3  # it did fit the training pixels...
    assert test_acc < 0.35  # ...and learnt nearly nothing that carries over


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"n_train": 0}, "n_train"), ({"n_test": 1.5}, "n_test"), ({"size": 4}, "size"), ({"seed": -1}, "seed")],
)
def test_builtin_refuses_bad_arguments(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        builtin(**kwargs)  # type: ignore[arg-type]


def test_dataset_validates_its_tensors() -> None:
    x, y = torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64)
    ok = dict(name="t", classes=("a", "b"), x_train=x, y_train=y, x_test=x, y_test=y, mean=(0.5,) * 3, std=(0.2,) * 3)
    Dataset(**ok)  # type: ignore[arg-type]
    for change, field in [
        ({"x_train": x.float()}, "x_train"),
        ({"y_test": y[:3]}, "y_test"),
        ({"y_train": y + 2}, "y_train"),
        ({"x_test": torch.zeros(4, 3, 9, 9, dtype=torch.uint8)}, "x_test"),
        ({"mean": (0.5,)}, "mean"),
        ({"std": (0.2, 0.0, 0.2)}, "std"),
    ]:
        with pytest.raises(ValueError, match=field):
            Dataset(**{**ok, **change})  # type: ignore[arg-type]


def test_channel_stats_match_numpy() -> None:
    x = torch.randint(0, 256, (7, 3, 5, 6), dtype=torch.uint8)
    mean, std = channel_stats(x)
    ref = x.numpy().astype(np.float64) / 255
    assert mean == pytest.approx(ref.mean((0, 2, 3)).tolist(), abs=1e-12)
    assert std == pytest.approx(ref.std((0, 2, 3), ddof=1).tolist(), abs=1e-12)


def test_builtin_is_what_load_dataset_returns_by_name() -> None:
    assert DATASETS[0] == "builtin"
    with pytest.raises(ValueError, match="imagenet"):
        load_dataset("imagenet")


def test_the_data_dir_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_data_dir({"RESNET_DATA_DIR": str(tmp_path)}) == tmp_path
    assert default_data_dir({}) == ROOT / "data"
    # Without a root, load_dataset reads the data folder, looked up when called (never at import).
    expected = write_cifar(tmp_path / "cifar-10-batches-py")
    monkeypatch.setenv("RESNET_DATA_DIR", str(tmp_path))
    check_cifar(load_dataset("cifar10", download=False), expected)


# ----------------------------------------------------------------------------------------------
# CIFAR-10 in its own format: pickled dicts, "data" uint8 (n, 3072) as R, G, B planes, "labels"


def write_cifar(folder: Path, *, per_batch: int = 4, n_test: int = 6, seed: int = 0) -> tuple[np.ndarray, ...]:
    """A small cifar-10-batches-py folder; returns (train images NCHW, train labels, test images, test labels)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        filenames = [f"{i}.png" for i in range(n)]
        entry = {"batch_label": f"{name} of 5", "labels": labels, "data": data, "filenames": filenames}
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))  # the real files are Python 2 pickles
        xs.append(data.reshape(n, 3, 32, 32))
        ys.append(np.array(labels))
    meta = {"label_names": CIFAR_LABELS, "num_cases_per_batch": per_batch, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return np.concatenate(xs[:5]), np.concatenate(ys[:5]), xs[5], ys[5]


def check_cifar(d: Dataset, expected: tuple[np.ndarray, ...]) -> None:
    x_train, y_train, x_test, y_test = expected
    assert d.name == "cifar10" and d.classes == tuple(CIFAR_LABELS)
    assert d.x_train.dtype == torch.uint8 and d.x_train.shape == (20, 3, 32, 32) and d.input_size == (3, 32, 32)
    assert np.array_equal(d.x_train.numpy(), x_train) and np.array_equal(d.y_train.numpy(), y_train)
    assert np.array_equal(d.x_test.numpy(), x_test) and np.array_equal(d.y_test.numpy(), y_test)
    assert d.y_train.dtype == torch.int64 and len(d.mean) == 3


def test_cifar10_files_in_the_real_format_load(tmp_path: Path) -> None:
    expected = write_cifar(tmp_path / "cifar-10-batches-py")
    # torchvision's class refuses them: it checks each batch file's md5 against the published archive's.
    with pytest.raises(RuntimeError, match="corrupted"):
        CIFAR10(str(tmp_path), train=True)
    # So load_dataset reads the same format itself (no network: download=False).
    check_cifar(load_dataset("cifar10", root=tmp_path, download=False), expected)


def test_cifar10_files_with_the_published_md5s_load_through_torchvision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    expected = write_cifar(folder)
    train_list = [[f"data_batch_{i}", md5(folder / f"data_batch_{i}")] for i in range(1, 6)]
    monkeypatch.setattr(CIFAR10, "train_list", train_list)
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5(folder / "test_batch")]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5(folder / "batches.meta")})
    assert CIFAR10(str(tmp_path), train=True).data.shape == (20, 32, 32, 3)  # torchvision takes them now
    check_cifar(load_dataset("cifar10", root=tmp_path, download=False), expected)


def test_a_cifar_batch_that_would_run_code_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[object, ...]:
            return (os.system, (f"touch {marker}",))

    (folder / "data_batch_3").write_bytes(pickle.dumps({"data": Evil(), "labels": []}, protocol=2))
    with pytest.raises(DatasetUnavailable, match=r"data_batch_3 .*system is not allowed"):
        load_dataset("cifar10", root=tmp_path, download=False)
    assert not marker.exists()


def cifar_archive(tmp_path: Path) -> tuple[Path, tuple[np.ndarray, ...]]:
    src = tmp_path / "src"
    expected = write_cifar(src / "cifar-10-batches-py")
    archive = tmp_path / "served" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return archive, expected


def test_cifar10_download_verifies_and_extracts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive, expected = cifar_archive(tmp_path)
    monkeypatch.setattr(CIFAR10, "url", archive.as_uri())
    monkeypatch.setattr(CIFAR10, "tgz_md5", md5(archive))
    root = tmp_path / "data"
    calls: list[tuple[int, int | None]] = []
    d = load_dataset("cifar10", root=root, on_progress=lambda done, total: calls.append((done, total)))
    check_cifar(d, expected)
    size = archive.stat().st_size
    assert calls and calls[-1] == (size, size)
    assert md5(root / "cifar-10-python.tar.gz") == md5(archive)  # kept, like torchvision does
    assert sorted(p.name for p in (root / "cifar-10-batches-py").iterdir()) == sorted(CIFAR_NAMES)
    assert leftovers(root) == []
    # Now the files are there: no second download.
    monkeypatch.setattr(urllib.request, "urlopen", _offline)
    check_cifar(load_dataset("cifar10", root=root), expected)


def test_a_truncated_download_is_deleted_never_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive, _ = cifar_archive(tmp_path)
    full_md5 = md5(archive)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])  # the server sends half
    monkeypatch.setattr(CIFAR10, "url", archive.as_uri())
    monkeypatch.setattr(CIFAR10, "tgz_md5", full_md5)
    root = tmp_path / "data"
    with pytest.raises(DatasetUnavailable, match=r"corrupt.*deleted it"):
        load_dataset("cifar10", root=root)
    assert list(root.iterdir()) == []  # no archive, no partial file, no extracted folder


def test_an_archive_that_fails_to_extract_is_deleted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive, _ = cifar_archive(tmp_path)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    monkeypatch.setattr(CIFAR10, "url", archive.as_uri())
    monkeypatch.setattr(CIFAR10, "tgz_md5", md5(archive))  # even a matching md5 cannot save a broken archive
    root = tmp_path / "data"
    with pytest.raises(DatasetUnavailable, match=r"could not be extracted.*deleted it"):
        load_dataset("cifar10", root=root)
    assert list(root.iterdir()) == []


def test_a_hand_placed_archive_with_the_wrong_md5_is_deleted(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "cifar-10-python.tar.gz").write_bytes(b"not the archive")
    with pytest.raises(DatasetUnavailable, match=r"incomplete or corrupt.*deleted it"):
        load_dataset("cifar10", root=root, download=False)
    assert list(root.iterdir()) == []


def _offline(*args: object, **kwargs: object) -> object:
    raise urllib.error.URLError("no network (test)")


def test_offline_cifar10_says_where_to_put_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", _offline)
    root = tmp_path / "data"
    with pytest.raises(DatasetUnavailable) as info:
        load_dataset("cifar10", root=root)
    message = str(info.value)
    assert str(root / "cifar-10-python.tar.gz") in message and str(root / "cifar-10-batches-py") in message
    assert all(name in message for name in CIFAR_NAMES)
    assert "no network" in message and "builtin" in message and "offline" in message
    assert leftovers(tmp_path) == [] and not (root / "cifar-10-python.tar.gz").exists()


def test_download_false_with_no_files_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailable, match="download=False"):
        load_dataset("cifar10", root=tmp_path, download=False)
    with pytest.raises(DatasetUnavailable, match="download=False"):
        load_dataset("mnist", root=tmp_path, download=False)


# ----------------------------------------------------------------------------------------------
# MNIST and Fashion-MNIST in their own format: big-endian idx ubyte files in <root>/<Class>/raw/


def idx_images(x: np.ndarray) -> bytes:
    return (0x0803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in x.shape) + x.tobytes()


def idx_labels(y: np.ndarray) -> bytes:
    return (0x0801).to_bytes(4, "big") + len(y).to_bytes(4, "big") + y.astype(np.uint8).tobytes()


def write_mnist(raw: Path, *, gz: bool, seed: int = 0, n_train: int = 12, n_test: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    raw.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, a in arrays.items():
        data = idx_images(a) if a.ndim == 3 else idx_labels(a)
        if gz:
            buf = io.BytesIO()
            with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as f:
                f.write(data)
            (raw / f"{name}.gz").write_bytes(buf.getvalue())
        else:
            (raw / name).write_bytes(data)
    return arrays


def check_mnist(d: Dataset, arrays: dict[str, np.ndarray], name: str) -> None:
    assert d.name == name and len(d.classes) == 10
    assert d.x_train.shape == (12, 1, 28, 28) and d.x_train.dtype == torch.uint8 and d.input_size == (1, 28, 28)
    assert np.array_equal(d.x_train[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert np.array_equal(d.y_train.numpy(), arrays["train-labels-idx1-ubyte"]) and d.y_train.dtype == torch.int64
    assert np.array_equal(d.x_test[:, 0].numpy(), arrays["t10k-images-idx3-ubyte"])
    assert np.array_equal(d.y_test.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert len(d.mean) == len(d.std) == 1


@pytest.mark.parametrize(("name", "cls"), [("mnist", MNIST), ("fashion_mnist", FashionMNIST)])
def test_mnist_idx_files_load(tmp_path: Path, name: str, cls: type) -> None:
    arrays = write_mnist(tmp_path / cls.__name__ / "raw", gz=False)
    d = load_dataset(name, root=tmp_path, download=False)
    check_mnist(d, arrays, name)
    assert d.classes == tuple(cls.classes)


def test_gzipped_mnist_files_are_checked_and_unzipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = tmp_path / "MNIST" / "raw"
    arrays = write_mnist(raw, gz=True)
    monkeypatch.setattr(MNIST, "resources", [(f"{n}.gz", md5(raw / f"{n}.gz")) for n in arrays])
    check_mnist(load_dataset("mnist", root=tmp_path, download=False), arrays, "mnist")
    assert all((raw / n).is_file() for n in arrays) and leftovers(tmp_path) == []


def test_gzipped_mnist_files_with_the_wrong_md5_are_deleted(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    write_mnist(raw, gz=True)  # the published md5s are those of the real files, not of these
    with pytest.raises(DatasetUnavailable, match=r"train-images-idx3-ubyte\.gz is incomplete or corrupt.*deleted"):
        load_dataset("mnist", root=tmp_path, download=False)
    assert not (raw / "train-images-idx3-ubyte.gz").exists()


def test_mnist_downloads_from_the_first_mirror_that_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served = tmp_path / "served"
    arrays = write_mnist(served, gz=True)
    monkeypatch.setattr(MNIST, "resources", [(f"{n}.gz", md5(served / f"{n}.gz")) for n in arrays])
    monkeypatch.setattr(MNIST, "mirrors", [(tmp_path / "nowhere").as_uri() + "/", served.as_uri() + "/"])
    root = tmp_path / "data"
    check_mnist(load_dataset("mnist", root=root), arrays, "mnist")
    assert leftovers(root) == []


def test_offline_mnist_says_where_to_put_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", _offline)
    with pytest.raises(DatasetUnavailable) as info:
        load_dataset("fashion_mnist", root=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "FashionMNIST" / "raw") in message
    assert all(f in message for f, _ in FashionMNIST.resources) and "builtin" in message
    assert leftovers(tmp_path) == []


# ----------------------------------------------------------------------------------------------
# Presence from file names, and fetching over HTTP (a local server on 127.0.0.1 with files the tests write)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve `folder` over HTTP on 127.0.0.1 (a free port) while the block runs; yields its URL, ending in /."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_presence_follows_the_files_on_disk(tmp_path: Path) -> None:
    assert dataset_present("builtin", root=tmp_path)  # drawn in memory: always here
    assert not any(dataset_present(n, root=tmp_path) for n in ("cifar10", "mnist", "fashion_mnist"))
    write_cifar(tmp_path / "cifar-10-batches-py")
    assert dataset_present("cifar10", root=tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()  # one file short: load_dataset would need the network
    assert not dataset_present("cifar10", root=tmp_path)
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"an archive to extract when loaded")
    assert dataset_present("cifar10", root=tmp_path)

    raw = tmp_path / "MNIST" / "raw"
    arrays = write_mnist(raw, gz=False)
    assert dataset_present("mnist", root=tmp_path) and not dataset_present("fashion_mnist", root=tmp_path)
    (raw / "t10k-labels-idx1-ubyte").rename(raw / "t10k-labels-idx1-ubyte.gz")  # the archive counts as well
    assert dataset_present("mnist", root=tmp_path)
    (raw / "t10k-labels-idx1-ubyte.gz").unlink()
    assert not dataset_present("mnist", root=tmp_path)
    # It agrees with what loading without a network does.
    with pytest.raises(DatasetUnavailable, match="download=False"):
        load_dataset("mnist", root=tmp_path, download=False)
    write_mnist(raw, gz=False)
    assert dataset_present("mnist", root=tmp_path)
    check_mnist(load_dataset("mnist", root=tmp_path, download=False), arrays, "mnist")
    with pytest.raises(ValueError, match="imagenet"):
        dataset_present("imagenet", root=tmp_path)


def test_presence_reads_the_data_dir_when_called(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESNET_DATA_DIR", str(tmp_path))
    assert not dataset_present("cifar10")
    write_cifar(tmp_path / "cifar-10-batches-py")
    assert dataset_present("cifar10")


def test_fetch_downloads_from_a_mirror_over_http_and_reads_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive, expected = cifar_archive(tmp_path)
    mirror = tmp_path / "mirror"  # laid out like a data folder
    arrays = write_mnist(mirror / "MNIST" / "raw", gz=True)
    shutil.copy(archive, mirror / "cifar-10-python.tar.gz")
    monkeypatch.setattr(CIFAR10, "tgz_md5", md5(archive))  # the published md5s are the real files'
    monkeypatch.setattr(MNIST, "resources", [(f"{n}.gz", md5(mirror / "MNIST" / "raw" / f"{n}.gz")) for n in arrays])
    root = tmp_path / "data"
    calls: list[tuple[int, int | None]] = []
    with serve(mirror) as url:
        assert fetch_dataset("cifar10", root=root, mirror=url, on_progress=lambda d, t: calls.append((d, t))) == root
        fetch_dataset("mnist", root=root, mirror=url.rstrip("/"))  # with or without the trailing slash
    assert calls[-1] == (archive.stat().st_size, archive.stat().st_size)
    assert dataset_present("cifar10", root=root) and dataset_present("mnist", root=root)
    assert sorted(p.name for p in (root / "cifar-10-batches-py").iterdir()) == sorted(CIFAR_NAMES)
    assert leftovers(root) == []
    monkeypatch.setattr(urllib.request, "urlopen", _offline)  # from now on everything comes from disk
    check_cifar(load_dataset("cifar10", root=root), expected)
    check_mnist(load_dataset("mnist", root=root), arrays, "mnist")
    with pytest.raises(ValueError, match="nothing to fetch"):
        fetch_dataset("builtin", root=root)


def test_fetch_refuses_a_file_whose_md5_is_not_the_published_one(tmp_path: Path) -> None:
    archive, _ = cifar_archive(tmp_path)  # a real archive, but not the published one: its md5 differs
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copy(archive, mirror / "cifar-10-python.tar.gz")
    root = tmp_path / "data"
    with serve(mirror) as url, pytest.raises(DatasetUnavailable) as info:
        fetch_dataset("cifar10", root=root, mirror=url)
    assert f"md5 is not {CIFAR10.tgz_md5}" in info.value.reason and "deleted it" in info.value.reason
    assert list(root.iterdir()) == []  # nothing under the final name, nothing partial
    assert not dataset_present("cifar10", root=root)


def test_fetch_from_a_mirror_without_the_file_says_so_and_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    root = tmp_path / "data"
    with serve(tmp_path / "empty") as url, pytest.raises(DatasetUnavailable) as info:
        fetch_dataset("mnist", root=root, mirror=url)
    assert f"could not download {url}MNIST/raw/train-images-idx3-ubyte.gz" in info.value.reason
    assert "\n" not in info.value.reason and str(root / "MNIST" / "raw") in str(info.value)
    assert [p for p in root.rglob("*") if p.is_file()] == []
