"""Pretrained weights: the real loading path, fed with files the tests write (no network here)."""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
import torchvision

from resnet_core import PretrainedUnavailable, load_pretrained
from resnet_core.weights import (
    checkpoint_megabytes,
    checkpoint_path,
    checkpoint_present,
    download,
    fetch_checkpoint,
    pretrained_url,
    weights_dir,
)
from tests.test_data import serve


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path
    torch.hub.set_dir(str(Path(torch.hub._get_torch_home()) / "hub"))


def test_loads_a_cached_torchvision_checkpoint(torch_home: Path) -> None:
    ref = torchvision.models.resnet18().eval()
    url = torchvision.models.ResNet18_Weights.DEFAULT.url
    path = checkpoint_path(url)
    path.parent.mkdir(parents=True)
    torch.save(ref.state_dict(), path)

    pre = load_pretrained("resnet18")
    assert len(pre.categories) == 1000 and pre.categories[0] == "tench"
    assert pre.weights_name == "ResNet18_Weights.IMAGENET1K_V1"
    assert not pre.model.training
    img = torch.rand(3, 256, 300)
    x = pre.transforms(img).unsqueeze(0)
    assert x.shape == (1, 3, 224, 224)  # the weights' own resize and crop
    with torch.no_grad():
        assert (pre.model(x) - ref(x)).abs().max() <= 1e-5


def test_offline_gives_a_message_that_says_what_to_do(torch_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(PretrainedUnavailable) as e:
        load_pretrained("resnet50")
    msg = str(e.value)
    assert "could not download" in msg and "resnet50-11ad3fa6.pth" in msg and str(torch_home) in msg
    assert not list((torch_home / "hub" / "checkpoints").glob("*"))  # nothing half-written left behind


def test_presets_without_torchvision_weights_say_so() -> None:
    with pytest.raises(PretrainedUnavailable, match="no ImageNet weights for 'resnet20'"):
        load_pretrained("resnet20")


def test_download_reports_progress_and_checks_the_hash(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 5000
    digest = hashlib.sha256(payload).hexdigest()[:8]
    src = tmp_path / "src.bin"
    src.write_bytes(payload)
    progress: list[tuple[int, int | None]] = []
    dest = download(src.as_uri(), tmp_path / "out" / f"model-{digest}.pth",
                    on_progress=lambda done, total: progress.append((done, total)), chunk_bytes=100_000)
    assert dest.read_bytes() == payload
    assert progress[-1] == (len(payload), len(payload)) and len(progress) == 13

    with pytest.raises(PretrainedUnavailable, match="hash mismatch"):
        download(src.as_uri(), tmp_path / "out2" / "model-deadbeef.pth")
    assert list((tmp_path / "out2").iterdir()) == []  # the partial file is gone


def test_presence_is_the_checkpoint_file_where_loading_looks(torch_home: Path) -> None:
    assert weights_dir() == torch_home / "hub" / "checkpoints"  # torch hub's cache, read when called
    assert not checkpoint_present("resnet18")
    path = checkpoint_path(pretrained_url("resnet18"))
    path.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), path)
    assert checkpoint_present("resnet18") and not checkpoint_present("resnet50")
    assert load_pretrained("resnet18").weights_name == "ResNet18_Weights.IMAGENET1K_V1"  # no network needed
    other = torch_home / "elsewhere"
    assert not checkpoint_present("resnet18", root=other)
    with pytest.raises(PretrainedUnavailable, match="no ImageNet weights for 'resnet20'"):
        checkpoint_present("resnet20")
    # torchvision's own record of the download size (resnet18: 44.7 MB).
    assert checkpoint_megabytes("resnet18") == pytest.approx(44.661)


def test_fetch_from_a_mirror_refuses_a_file_whose_hash_is_not_in_its_name(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    name = checkpoint_path(pretrained_url("resnet18")).name  # resnet18-f37072fd.pth: the sha256 starts f37072fd
    (mirror / name).write_bytes(b"not the published checkpoint" * 1000)
    root = tmp_path / "weights"
    with serve(mirror) as url, pytest.raises(PretrainedUnavailable) as info:
        fetch_checkpoint("resnet18", root=root, mirror=url)
    assert "hash mismatch" in str(info.value) and f"{url}{name}" in info.value.reason
    assert list(root.iterdir()) == []  # nothing under the final name, nothing partial


def test_download_checks_a_published_md5_before_the_file_takes_its_name(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload" * 999)
    good = hashlib.md5(src.read_bytes()).hexdigest()
    assert download(src.as_uri(), tmp_path / "a" / "file.bin", md5=good).read_bytes() == src.read_bytes()
    with pytest.raises(PretrainedUnavailable, match=f"md5 is not {'0' * 32}"):
        download(src.as_uri(), tmp_path / "b" / "file.bin", md5="0" * 32)
    assert list((tmp_path / "b").iterdir()) == []
