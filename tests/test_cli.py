"""`python -m resnet_core summary`: the table, the totals, both MAC conventions, the CSV."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch
import torchinfo

from resnet_core import analyze, build_model

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
    assert table["macs"].sum() == report.total_macs
    assert list(table["layer"]) == [r.path for r in report.rows]
    assert torch.Size(map(int, table["output_shape"].iloc[0].split("x"))) == report.rows[0].output_shape


def test_summary_refuses_bad_input_clearly() -> None:
    run = subprocess.run([sys.executable, "-m", "resnet_core", "summary", "resnet18", "--input", "3x0x224"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "height=0 is not allowed" in run.stderr and "Traceback" not in run.stderr
