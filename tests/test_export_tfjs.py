"""python -m training.export_tfjs: a TF.js graph model the WASM backend can run.

Tests that convert need the export extra (``pip install '.[export]'``) and are skipped without it; the
checks of arguments and of a converted graph's JSON run without it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from training.export_tfjs import ExportError, check_wasm_compatible, main


@pytest.fixture(scope="module")
def tensorflowjs():
    from aiface.quiet import quiet_tensorflow

    quiet_tensorflow()  # TF Decision Forests, which tensorflowjs imports, wants IPython without it
    return pytest.importorskip("tensorflowjs", reason="the export extra is not installed (pip install '.[export]')")


@pytest.fixture(scope="module")
def exported(tensorflowjs, tiny_model_path, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("export") / "model"
    assert main([str(tiny_model_path), str(out_dir), "--quantize", "float16"]) == 0
    return out_dir


@pytest.mark.slow  # converting (SavedModel, then TF.js) takes seconds
def test_export_writes_graph_model_and_metadata(exported):
    model_json = json.loads((exported / "model.json").read_text())
    metadata = json.loads((exported / "metadata.json").read_text())

    assert model_json["format"] == "graph-model"
    assert {w["dtype"] for g in model_json["weightsManifest"] for w in g["weights"]} <= {"float32", "int32"}
    assert any(
        w.get("quantization", {}).get("dtype") == "float16"
        for g in model_json["weightsManifest"] for w in g["weights"]
    )
    ops = {node["op"] for node in model_json["modelTopology"]["node"]}
    assert not any("BatchNorm" in op for op in ops)
    check_wasm_compatible(model_json)
    assert metadata == {
        "name": "tiny-test", "version": "0.0.1", "backbone": "tiny", "image_size": 32,
        "preprocessing": metadata["preprocessing"], "class_names": ["real", "fake"],
        "temperature": 1.0, "threshold": 0.5, "quantization": "float16",
    }
    assert "triangle" in metadata["preprocessing"]


@pytest.mark.slow
def test_refuses_to_overwrite_without_flag(exported, tiny_model_path, capsys):
    before = (exported / "model.json").read_bytes()
    assert main([str(tiny_model_path), str(exported)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {exported} already exists; pass --overwrite to replace it"
    assert (exported / "model.json").read_bytes() == before


def test_overwrite_refuses_a_folder_with_other_files(tiny_model_path, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main([str(tiny_model_path), str(tmp_path), "--overwrite"]) == 2
    assert "not an exported model (notes.txt)" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_missing_model_is_a_one_line_error(tmp_path, capsys):
    assert main([str(tmp_path / "nope.keras"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: model file {tmp_path / 'nope.keras'} does not exist\n"
    assert not (tmp_path / "out").exists()


def test_rank4_conv_bias_is_refused():
    model_json = {
        "weightsManifest": [{"weights": [{"name": "bias", "shape": [1, 1, 1, 8]}]}],
        "modelTopology": {"node": [{"name": "conv", "op": "_FusedConv2D", "input": ["x", "kernel", "bias"]}]},
    }
    with pytest.raises(ExportError, match=r"bias of shape \[1, 1, 1, 8\]"):
        check_wasm_compatible(model_json)


def test_mixed_quantization_puts_only_the_last_stage_kernels_in_one_byte(tensorflowjs):
    from tensorflowjs.quantization import map_layers_to_quantization_dtype

    from training.export_tfjs import QUANTIZATIONS

    prefix = "StatefulPartitionedCall/aiface_efficientnet_lite0_1/efficientnet_lite0_1/"
    names = [
        prefix + "conv_head_1/convolution/ReadVariableOp",
        prefix + "blocks_15_project_conv_1/convolution/ReadVariableOp",
        prefix + "blocks_10_project_conv_1/convolution/ReadVariableOp",  # a covariance tap's input
        "StatefulPartitionedCall/aiface_efficientnet_lite0_1/logits_1/Cast/ReadVariableOp",
    ]
    dtypes = map_layers_to_quantization_dtype(names, QUANTIZATIONS["mixed"])
    assert [np.dtype(dtypes[name]).name for name in names] == ["uint8", "uint8", "float16", "float16"]
