"""The comparison of two ResNets: its numbers are the single-model analyses' (and torchvision's where torchvision has
the model), its diff marks exactly the layers that differ, and the compare page shows them and keeps B in the link."""

from __future__ import annotations

import io

import pandas as pd
import pytest
import torch
import torchvision

from resnet_core import PRESETS, TORCHVISION_PRESETS, analyze, build_model
from resnet_core.compare import compare, diff_csv_frame, row_keys
from resnet_core.units import fmt_bytes, fmt_count
from tests.test_pages import run_app
from ui.compare import PAIRS, sentences


def _side(name: str) -> int:
    return 32 if PRESETS[name].stem == "cifar" else 224


def _pair(a: str, b: str, batch: int = 1):  # type: ignore[no-untyped-def]
    size = (3, _side(a), _side(a))
    return compare(analyze(a, input_size=size, batch_size=batch), analyze(b, input_size=size, batch_size=batch))


def _torchvision_params(name: str) -> int:
    with torch.device("meta"):  # only the shapes of the weights are needed
        return sum(p.numel() for p in getattr(torchvision.models, name)().parameters())


# --- the library ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_pair_numbers_equal_the_single_model_analyses(a: str, b: str) -> None:
    c = _pair(a, b, batch=4)
    size = (3, _side(a), _side(a))
    single = {"A": analyze(a, input_size=size, batch_size=4), "B": analyze(b, input_size=size, batch_size=4)}
    expected = {
        "params": lambda r: r.total_params,
        "macs": lambda r: r.total_macs,
        "flops": lambda r: r.total_flops,
        "activation_bytes": lambda r: r.activation_bytes,
        "depth": lambda r: r.weighted_layers,
        "receptive_field": lambda r: r.receptive_field,
    }
    assert [q.name for q in c.headline] == list(expected)
    for q in c.headline:
        assert (q.a, q.b) == (expected[q.name](single["A"]), expected[q.name](single["B"])), q.name
        assert q.difference == q.b - q.a
        assert q.ratio == pytest.approx(q.b / q.a)
    assert c.quantity("flops").b == 2 * c.quantity("macs").b
    # The per-stage sums add up to the totals, and each stage's numbers are that model's own stage table.
    for side, report in single.items():
        assert c.stages[f"{side} params"].sum() == report.total_params
        assert c.stages[f"{side} macs"].sum() == report.total_macs
        assert c.stages[f"{side} output_bytes"].sum() == report.activation_bytes
        own = report.to_dataframe("stage")
        shown = c.stages[c.stages[f"{side} blocks"].gt(0) | c.stages["stage"].isin(["stem", "head"])]
        assert list(shown[f"{side} output_shape"]) == list(own["output_shape"])
    # Every layer of each model is in the aligned table once, in its forward order.
    for side, report in single.items():
        rows = c.layers[c.layers[f"{side} type"].notna()]
        assert list(rows["layer"]) == [r.path for r in report.rows]
        assert list(rows[f"{side} macs"]) == [r.macs for r in report.rows]


@pytest.mark.parametrize(("a", "b"), [p for p in PAIRS if set(p) & set(TORCHVISION_PRESETS)])
def test_pair_parameters_equal_torchvision(a: str, b: str) -> None:
    c = _pair(a, b)
    for name, count in ((a, c.quantity("params").a), (b, c.quantity("params").b)):
        if name in TORCHVISION_PRESETS:
            assert count == _torchvision_params(name), name


def _output_shapes(model: torch.nn.Module, paths: list[str]) -> dict[str, tuple[int, ...]]:
    """The output shape of each module in `paths`, from a real forward pass (on the meta device: shapes only)."""
    shapes: dict[str, tuple[int, ...]] = {}
    modules = dict(model.named_modules())
    def record(path: str):  # type: ignore[no-untyped-def]
        def hook(module: torch.nn.Module, inputs: object, output: torch.Tensor) -> None:
            shapes[path] = tuple(output.shape)
        return hook

    hooks = [modules[p].register_forward_hook(record(p)) for p in paths]
    try:
        model.eval()(torch.empty(1, 3, 224, 224, device="meta"))
    finally:
        for h in hooks:
            h.remove()
    return shapes


def test_v1_against_v1_5_marks_exactly_the_moved_stride() -> None:
    c = _pair("resnet50_v1", "resnet50")
    assert c.quantity("params").difference == 0
    # The stride moves from the first 1x1 conv (v1, [He2015]) to the 3x3 conv (v1.5, torchvision) in the first
    # block of stages 2-4; between them sit that 1x1 conv's BN and ReLU, whose output is as large as the conv's.
    downsampling = ("layer2.0", "layer3.0", "layer4.0")
    expected = [f"{b}.{name}" for b in downsampling for name in ("conv1", "bn1", "bn1.relu", "conv2")]
    assert list(c.differing["key"]) == expected
    assert c.differing_blocks == downsampling
    convs = c.differing[c.differing["A type"] == "Conv2d"]
    assert list(convs["A stride"]) == [2, 1] * 3 and list(convs["B stride"]) == [1, 2] * 3
    # The outside truth for the shapes: torchvision's resnet50 (B) and the paper's placement built as a module (A),
    # each run forward; our rows must say what the modules output.
    conv_paths = [f"{b}.{n}" for b in downsampling for n in ("conv1", "conv2")]
    with torch.device("meta"):
        tv, v1 = torchvision.models.resnet50(), build_model("resnet50_v1")
    for side, model in (("B", tv), ("A", v1)):
        shapes = _output_shapes(model, conv_paths)
        rows = c.layers.set_index("key")
        assert {p: rows.loc[p, f"{side} output_shape"] for p in conv_paths} == {
            p: "x".join(map(str, s)) for p, s in shapes.items()}
    first = c.differing[c.differing["layer"].str.endswith("conv1")]
    assert (first["A output_shape"] != first["B output_shape"]).all() and (first["A macs"] != first["B macs"]).all()
    # All of the MACs' difference is in the marked rows (torchvision lists 4.09 GFLOPS for v1.5; the paper 3.8 for v1).
    assert int((c.differing["B macs"] - c.differing["A macs"]).sum()) == c.quantity("macs").difference > 0
    assert round(c.quantity("macs").b / 1e9, 2) == 4.09 and round(c.quantity("macs").a / 1e9, 1) == 3.9


def test_a_deeper_stage_adds_rows_and_changes_none() -> None:
    c = _pair("resnet20", "resnet110")
    a, b = c.a, c.b
    # Blocks 3.. of each stage are only in B; every layer A has is in B at the same path with the same numbers.
    assert set(c.differing["changed"]) == {"only in B"}
    assert len(c.differing) == len(b.rows) - len(a.rows)
    assert set(c.differing["block"].dropna()) == set(range(3, 18))
    assert list(c.layers[c.layers["A type"].notna()]["key"]) == row_keys(a.rows)


def test_plain_twin_differs_in_the_shortcuts_only() -> None:
    c = _pair("resnet56", "plain56")
    assert c.quantity("params").difference == 0 and c.quantity("macs").difference == 0
    only_a = c.differing
    assert set(only_a["changed"]) == {"only in A"}
    # 27 sums, and the two zero-padded shortcuts of option A where the stage changes shape ([He2015] 4.2).
    assert only_a["A type"].value_counts().to_dict() == {"Add": 27, "ZeroPadShortcut": 2}


def test_diff_csv_has_units_in_its_headers() -> None:
    c = _pair("resnet50_v1", "resnet50")
    df = pd.read_csv(io.StringIO(diff_csv_frame(c).to_csv(index=False)))
    assert {"A macs (MACs per image)", "B output_bytes (bytes per batch)", "A params (params)"} <= set(df.columns)
    assert len(df) == len(c.layers) and df["differs"].sum() == 12
    assert len(diff_csv_frame(c, only_differing=True)) == 12


def test_models_at_different_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="same input size"):
        compare(analyze("resnet18"), analyze("resnet18", input_size=(3, 256, 256)))


def test_sentences_are_made_from_the_numbers() -> None:
    c = _pair("resnet18", "resnet50")
    p, m = c.quantity("params"), c.quantity("macs")
    first = sentences(c)[0]
    assert first == f"B has {p.b / p.a:.3g}× the parameters of A and {m.b / m.a:.3g}× its MACs."
    swapped = sentences(_pair("resnet50", "resnet18"))[0]
    assert swapped == f"B has {p.a / p.b:.3g}× the parameters of A and {m.a / m.b:.3g}× its MACs."
    # Where the parameters are: stage 4 holds the largest part of ResNet-50's extra weights.
    diff = c.stages.set_index("stage")
    share = (diff["B params"] - diff["A params"]).abs()
    assert f"stage 4 ({share['layer4'] / share.sum():.0%})" in sentences(c)[1]
    v1 = sentences(_pair("resnet50_v1", "resnet50"))
    assert v1[0].startswith("B has the same parameters as A")
    assert v1[-1].endswith("all in blocks layer2.0, layer3.0 and layer4.0.")


# --- the page ---------------------------------------------------------------------------------------------------


def _headline(at) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    return next(t.value for t in at.table if "B / A" in t.value.columns)


def _query(at) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {k: (v[-1] if isinstance(v, list) else v) for k, v in at.query_params.items()}


def test_page_shows_a_shared_pair() -> None:
    at = run_app({"preset": "resnet50_v1", "b_preset": "resnet50"}, page="compare")
    assert not at.exception
    a, b = analyze("resnet50_v1"), analyze("resnet50")
    head = _headline(at)
    assert head.loc["Parameters"].tolist()[:2] == [fmt_count(a.total_params, "parameters")] * 2
    assert head.loc["MACs per image"].tolist()[:2] == [fmt_count(a.total_macs, "MACs"), fmt_count(b.total_macs, "MACs")]
    assert head.loc["Activation memory (batch 1)"].tolist()[:2] == [fmt_bytes(a.activation_bytes),
                                                                     fmt_bytes(b.activation_bytes)]
    assert at.title[0].value == "resnet50_v1 vs resnet50"
    assert any("same parameters" in md.value for md in at.markdown)
    assert any("analysed at A's input" in cap.value for cap in at.caption)
    assert _query(at)["b_preset"] == "resnet50" and _query(at)["preset"] == "resnet50_v1"


def test_page_switches_b_and_keeps_it_in_the_link() -> None:
    at = run_app({"preset": "resnet18", "input": "3x160x160", "batch": "8", "b_preset": "resnet50"}, page="compare")
    at.selectbox(key="cmp.b_model").select("resnet152").run()
    assert not at.exception
    b = analyze("resnet152", input_size=(3, 160, 160), batch_size=8)  # at A's input and batch
    assert _headline(at).loc["MACs per image"].iloc[1] == fmt_count(b.total_macs, "MACs")
    assert _headline(at).loc["Activation memory (batch 8)"].iloc[1] == fmt_bytes(b.activation_bytes)
    assert _query(at)["b_preset"] == "resnet152" and "b_input" not in _query(at)


def test_pair_button_sets_both_models() -> None:
    at = run_app({"preset": "resnet18", "b_preset": "resnet50"}, page="compare")
    next(btn for btn in at.button if btn.label == "resnet56 | plain56").click().run()
    assert not at.exception
    q = _query(at)
    assert (q["preset"], q["b_preset"], q["input"]) == ("resnet56", "plain56", "3x32x32")
    assert at.selectbox(key="picker.preset").value == "resnet56"
    a = analyze("resnet56", input_size=(3, 32, 32))
    assert _headline(at).loc["Parameters"].iloc[0] == fmt_count(a.total_params, "parameters")


def test_custom_b_from_a_link_and_a_bad_one() -> None:
    q = {"preset": "resnet18", "b_preset": "custom", "b_blocks": "1,1,1,1", "b_block": "bottleneck"}
    at = run_app(q, page="compare")
    assert not at.exception
    from resnet_core import ResNetConfig

    custom = analyze(ResNetConfig(blocks=(1, 1, 1, 1), block="bottleneck"))
    assert _headline(at).loc["Parameters"].iloc[1] == fmt_count(custom.total_params, "parameters")
    assert _query(at)["b_blocks"] == "1,1,1,1"
    # A broken B in the link: said plainly, and a model B is still shown.
    at = run_app({"preset": "resnet18", "b_preset": "resnet9000"}, page="compare")
    assert not at.exception
    assert any("Unknown preset" in w.value and "resnet9000" in w.value for w in at.warning)
    assert _headline(at).loc["Parameters"].iloc[1] == fmt_count(analyze("resnet50").total_params, "parameters")


def test_invalid_custom_b_keeps_the_last_valid_b() -> None:
    at = run_app({"preset": "resnet18", "b_preset": "resnet34"}, page="compare")
    at.selectbox(key="cmp.b_model").select("custom").run()
    params = fmt_count(analyze("resnet34").total_params, "parameters")
    assert _headline(at).loc["Parameters"].iloc[1] == params  # custom starts from B on screen
    at.text_input(key="cmp.b.blocks").input("3,0,6,3").run()
    assert not at.exception
    assert any("Model B cannot be shown" in e.value and "stage 2 has 0" in e.value for e in at.error)
    assert _headline(at).loc["Parameters"].iloc[1] == params


def test_page_tabs_show_the_marked_layers_and_one_block_of_each() -> None:
    at = run_app({"preset": "resnet50_v1", "b_preset": "resnet50"}, page="compare")
    at.session_state["cmp.tab"] = "Layers side by side"
    at.run()
    c = _pair("resnet50_v1", "resnet50")
    assert len(at.dataframe[0].value) == len(c.layers)
    at.toggle(key="cmp.only_differing").set_value(True).run()
    assert at.dataframe[0].value["layer"].tolist() == list(c.differing["layer"])
    at.session_state["cmp.tab"] = "One block, layer by layer"
    at.run()
    assert not at.exception
    assert at.selectbox[1].value == "layer2.0"  # the first block that differs
    charts = at.get("graphviz_chart")
    assert len(charts) == 2
    assert "conv 1x1/2" in charts[0].proto.spec and "conv 3x3/2" in charts[1].proto.spec
