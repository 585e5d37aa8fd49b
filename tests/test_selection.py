"""The URL round trip of a selection, and what a broken or hostile link turns into."""

from __future__ import annotations

import pytest

from resnet_core import PRESETS, ResNetConfig
from server.selection import CUSTOM, DEFAULT, Selection, from_query, to_query


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_round_trip(name: str) -> None:
    side = 32 if PRESETS[name].stem == "cifar" else 160
    sel = Selection(name, PRESETS[name], (3, side, side + 16), 4)
    assert from_query(to_query(sel)) == (sel, [])


def test_custom_round_trip() -> None:
    cfg = ResNetConfig(blocks=(1, 2, 3), block=("basic", "bottleneck", "bottleneck"), widths=(32, 64, 128),
                       stem="cifar", stem_width=24, shortcut="C", stride_at="v1", preact=True, residual=False,
                       zero_init_residual=True, in_channels=1, num_classes=7)
    sel = Selection(CUSTOM, cfg, (1, 28, 28), 16)
    q = to_query(sel)
    assert q["blocks"] == "1,2,3" and q["input"] == "1x28x28"
    assert from_query(q) == (sel, [])


@pytest.mark.parametrize(
    ("query", "warning"),
    [
        ({"preset": "resnet51"}, "Unknown preset 'resnet51'"),
        ({"preset": "resnet18", "input": "abc"}, "input='abc' is not CxHxW"),
        ({"preset": "resnet18", "batch": "-5"}, "batch size -5 is out of range"),
        ({"preset": "resnet18", "batch": "1e9"}, "batch='1e9' is not a whole number"),
        ({"preset": "resnet18", "input": "3x1x1"}, "input height 1 is out of range"),
        ({"preset": "resnet18", "input": "3x5000x5000"}, "input height 5000 is out of range"),
        ({"preset": "custom", "blocks": "0,2"}, "blocks[0]=0"),
        ({"preset": "custom", "blocks": "<script>alert(1)</script>"}, "blocks='<script>alert(1)</script>' cannot"),
        ({"preset": "custom", "block": "bottleneck", "widths": "100,128,256,512", "width_per_group": "4"},
         "divide by 64"),
        ({"preset": "custom", "preact": "maybe"}, "preact='maybe' cannot be read"),
        ({"preset": "resnet18", "input": "9" * 500}, "too long"),
    ],
)
def test_broken_links_fall_back_with_a_warning(query: dict[str, str], warning: str) -> None:
    sel, warnings = from_query(query)
    assert any(warning in w for w in warnings), warnings
    ResNetConfig(**sel.config.to_dict())  # whatever comes back is valid


def test_no_query_is_the_default() -> None:
    assert from_query({}) == (DEFAULT, [])
