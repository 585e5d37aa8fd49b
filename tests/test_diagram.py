"""The block diagram: every block or collapsed stage appears once, shortcuts drawn by kind, shapes on edges."""

from __future__ import annotations

import re

from resnet_core import PRESETS, analyze
from ui.diagram import block_diagram, default_expanded


def test_expanded_stages_draw_every_block_and_its_shortcut() -> None:
    report = analyze("resnet50")
    dot = block_diagram(report, ["layer1", "layer2", "layer3", "layer4"])
    nodes = re.findall(r'^  "(layer\d\.\d+)" \[label', dot, flags=re.M)
    assert len(nodes) == sum(PRESETS["resnet50"].blocks)
    assert dot.count("projection 1x1") == 4 and dot.count('label=" identity"') == 12
    assert '"layer4.2.add" -> "head" [label=" 2048×7×7"]' in dot


def test_resnet152_collapses_its_long_stages() -> None:
    report = analyze("resnet152")
    expanded = default_expanded(report)
    assert expanded == ["layer1", "layer4"]
    dot = block_diagram(report, expanded)
    assert "layer3: 36 × bottleneck" in dot and "shortcuts: 1 projection 1x1, 35 identity" in dot
    assert len(re.findall(r"^  \"layer3\.\d+\" \[", dot, flags=re.M)) == 0


def test_zero_pad_and_plain_nets() -> None:
    assert "zero-pad (A)" in block_diagram(analyze("resnet20", input_size=(3, 32, 32)), ["layer1", "layer2"])
    plain = block_diagram(analyze("plain20", input_size=(3, 32, 32)), ["layer1", "layer2", "layer3"])
    assert "+" not in re.findall(r'label="(\+)"', plain) and "identity" not in plain
