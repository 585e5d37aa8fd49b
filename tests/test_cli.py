"""`python -m resnet_core summary`: the table, the totals, both MAC conventions, the CSV.
`python -m resnet_core fetch`: downloads from a local server, checked, into the folders the app reads."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch
import torchinfo
from torchvision.datasets import CIFAR10, MNIST

from resnet_core import analyze, build_model
from resnet_core.__main__ import main
from resnet_core.data import dataset_present, load_dataset
from resnet_core.weights import checkpoint_path, checkpoint_present, pretrained_url
from tests.test_data import check_mnist, cifar_archive, md5, serve, write_cifar, write_mnist

ROOT = Path(__file__).resolve().parents[1]


def test_summary_prints_totals_and_writes_the_csv(tmp_path: Path) -> None:
    csv = tmp_path / "out.csv"
    run = subprocess.run(
        [sys.executable, "-m", "resnet_core", "summary", "resnet50", "--input", "3x224x224", "--batch", "8",
         "--csv", str(csv)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    )
    report = analyze("resnet50", input_size=(3, 224, 224), batch_size=8)
    summary = torchinfo.summary(build_model("resnet50", device="meta").eval(), input_size=(8, 3, 224, 224),
                                device="meta", verbose=0, mode="eval")
    out = run.stdout
    assert f"parameters:        {summary.total_params:,}" in out
    assert f"MACs per image:    {report.total_macs:,}" in out and "4.09 GMACs" in out
    assert f"torchinfo Mult-Adds (batch): {summary.total_mult_adds:,}" in out
    assert "layer4.2.conv3" in out
    table = pd.read_csv(csv)
    assert len(table) == len(report.rows)
    assert table["macs_per_image"].sum() == report.total_macs  # every header says its unit
    assert table["output_bytes_per_batch"].sum() == report.activation_bytes
    assert list(table["layer"]) == [r.path for r in report.rows]
    assert torch.Size(map(int, table["output_shape_BxCxHxW"].iloc[0].split("x"))) == report.rows[0].output_shape


def test_summary_refuses_bad_input_clearly() -> None:
    run = subprocess.run([sys.executable, "-m", "resnet_core", "summary", "resnet18", "--input", "3x0x224"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "height=0 is not allowed" in run.stderr and "Traceback" not in run.stderr


Fetch = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def fetch(capsys: pytest.CaptureFixture[str]) -> Fetch:
    """`python -m resnet_core fetch ARGS` in this process (the entry point itself is run by the summary tests):
    its exit status, stdout and stderr."""
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        capsys.readouterr()
        try:
            code = main(["fetch", *args])
        except SystemExit as e:  # argparse refusing the command line
            code = e.code if isinstance(e.code, int) else 1
        out = capsys.readouterr()
        return subprocess.CompletedProcess(["fetch", *args], code, out.out, out.err)
    return run


def test_fetch_downloads_with_progress_then_has_nothing_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    mirror = tmp_path / "mirror"
    arrays = write_mnist(mirror / "MNIST" / "raw", gz=True)
    # These small files stand for the real ones: their md5s take the place of the published ones.
    monkeypatch.setattr(MNIST, "resources", [(f"{n}.gz", md5(mirror / "MNIST" / "raw" / f"{n}.gz")) for n in arrays])
    data = tmp_path / "data"
    with serve(mirror) as url:
        assert main(["fetch", "--data", "mnist", "--data-dir", str(data), "--mirror", url]) == 0
    out = capsys.readouterr()
    assert f"mnist: downloaded, checked and extracted into {data}" in out.out
    size = (mirror / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").stat().st_size
    assert f"downloading mnist: {size / 1e6:.1f} of {size / 1e6:.1f} MB" in out.err  # each file's progress
    check_mnist(load_dataset("mnist", root=data, download=False), arrays, "mnist")  # what the app then reads

    # A second time, with the mirror gone: nothing to download, and it says so.
    assert main(["fetch", "--data", "mnist", "--data-dir", str(data), "--mirror", url]) == 0
    assert capsys.readouterr().out.splitlines() == [f"mnist: already in {data}",
                                                    "Nothing to do: everything asked for is already here."]


def test_fetch_with_everything_in_place_says_so(tmp_path: Path, fetch: Fetch) -> None:
    data, weights = tmp_path / "data", tmp_path / "weights"
    write_cifar(data / "cifar-10-batches-py")
    path = checkpoint_path(pretrained_url("resnet18"), weights)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"a checkpoint put there earlier")
    run = fetch("--weights", "resnet18", "--data", "cifar10", "--data-dir", str(data), "--weights-dir", str(weights))
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [f"resnet18 weights: already in {weights}", f"cifar10: already in {data}",
                                       "Nothing to do: everything asked for is already here."]


def test_fetch_refuses_a_download_whose_checksum_is_not_the_published_one(tmp_path: Path, fetch: Fetch) -> None:
    archive, _ = cifar_archive(tmp_path)  # a well-formed archive, but not the published one
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copy(archive, mirror / "cifar-10-python.tar.gz")
    name = checkpoint_path(pretrained_url("resnet50")).name
    (mirror / name).write_bytes(b"not the published weights")
    data, weights = tmp_path / "data", tmp_path / "weights"
    with serve(mirror) as url:
        got_data = fetch("--data", "cifar10", "--data-dir", str(data), "--mirror", url)
        got_weights = fetch("--weights", "resnet50", "--weights-dir", str(weights), "--mirror", url)
    for run in (got_data, got_weights):
        assert run.returncode == 1 and "Traceback" not in run.stderr
        *progress, last = run.stderr.strip().splitlines()  # it ends with one clear line
        assert all(line.startswith("downloading ") for line in progress) and last.startswith("error: could not fetch")
    assert got_data.stderr.splitlines()[-1].startswith("error: could not fetch cifar10: ")
    assert f"md5 is not {CIFAR10.tgz_md5}" in got_data.stderr  # the published checksum, as the code has it
    assert got_weights.stderr.splitlines()[-1].startswith("error: could not fetch the resnet50 weights: ")
    assert "hash mismatch" in got_weights.stderr
    assert [p for p in tmp_path.joinpath("data").rglob("*") if p.is_file()] == []  # nothing kept, nothing partial
    assert list(weights.iterdir()) == [] and not checkpoint_present("resnet50", root=weights)


def test_fetch_with_no_network_ends_with_one_line_and_leaves_nothing(tmp_path: Path, fetch: Fetch) -> None:
    with serve(tmp_path) as url:
        pass  # the server has stopped: its port refuses connections, as an unreachable site does
    data = tmp_path / "data"
    run = fetch("--data", "cifar10", "mnist", "--data-dir", str(data), "--mirror", url)
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr.count("\n") == 1 and run.stderr.startswith(f"error: could not fetch cifar10: could not download "
                                                                  f"{url}cifar-10-python.tar.gz")
    assert "is this computer online?" in run.stderr and "Nothing partial was kept" in run.stderr
    assert not dataset_present("cifar10", root=data) and [p for p in data.rglob("*") if p.is_file()] == []


def test_fetch_asks_for_something_to_fetch(fetch: Fetch) -> None:
    run = fetch()
    assert run.returncode == 2 and "nothing to fetch" in run.stderr
    bad = fetch("--weights", "resnet20")  # torchvision publishes no weights for it
    assert bad.returncode == 2 and "invalid choice: 'resnet20'" in bad.stderr
