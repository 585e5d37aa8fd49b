"""The references table: torchvision's own metadata and the paper's tables beside our exact numbers."""

from __future__ import annotations

import pytest
from torchvision.models import get_model_weights

from resnet_core import TORCHVISION_PRESETS, analyze
from resnet_core.references import comparison, paper_config


@pytest.mark.parametrize("name", TORCHVISION_PRESETS)
def test_torchvision_metadata_agrees_with_our_counts(name: str) -> None:
    table = comparison(name)
    tv = table[table["source"].str.startswith("torchvision")]
    assert len(tv) == len(list(get_model_weights(name)))
    assert (tv["params"] == tv["ours: params"]).all()
    # torchvision's "GFLOPS" are GMACs rounded to 3 decimals.
    assert (abs(tv["MACs"] - tv["ours: MACs"]) < 0.0005e9).all()


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"])
def test_paper_rows_compare_the_papers_v1_model(name: str) -> None:
    table = comparison(name)
    paper = table[table["source"].str.startswith("He et al.")].iloc[0]
    assert paper["ours: MACs"] == analyze(paper_config(name)).total_macs
    assert abs(paper["ours: MACs"] - paper["MACs"]) / paper["MACs"] < 0.02


def test_cifar_rows_use_32_pixel_inputs() -> None:
    row = comparison("resnet110").iloc[0]
    assert row["input"] == "32x32" and row["ours: params"] == analyze("resnet110", input_size=(3, 32, 32)).total_params
    assert comparison("resnet18_cifar").empty
