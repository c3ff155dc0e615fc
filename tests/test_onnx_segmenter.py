"""``--segmenter onnx:MODEL`` end to end, with a tiny ONNX model the test builds.

The model is one 1×1×1 convolution with three output channels whose argmax splits the
normalised intensity (fat = 1) into background (< 0.25), lesion (0.25–0.75) and head (> 0.75):
the scores are 0, 8x − 4 (head) and 4x − 1 (lesion). On an image whose marrow reads 1000 and
whose lesion reads 450, the model's masks are therefore known voxel for voxel.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from lesionvol.cli import main
from lesionvol.errors import InputError
from lesionvol.inputs import AnalysisOptions, Visit
from lesionvol.study import analyze_scans

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

SIZE, HEAD_R, LESION_R = 40, 12, 5


def _model(path) -> str:
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.array([0.0, 8.0, 4.0], np.float32).reshape(3, 1, 1, 1, 1), "w")
    bias = numpy_helper.from_array(np.array([0.0, -4.0, -1.0], np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["scores"], kernel_shape=[1, 1, 1])], "bands",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, None, None, None])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 3, None, None, None])],
        initializer=[weights, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def _balls() -> tuple[np.ndarray, np.ndarray]:
    z, y, x = np.indices((SIZE,) * 3) - SIZE // 2
    r2 = x**2 + y**2 + z**2
    return r2 <= HEAD_R**2, r2 <= LESION_R**2


def _image(path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    head, lesion = _balls()
    values = np.where(lesion, 450.0, np.where(head, 1000.0, 0.0)).astype(np.float32)
    image = sitk.GetImageFromArray(values)
    image.SetOrigin((-20.0, 15.0, 30.0))
    sitk.WriteImage(image, str(path))
    return str(path)


def test_onnx_model_masks_are_what_the_analysis_measures(tmp_path):
    model, image = _model(tmp_path / "bands.onnx"), _image(tmp_path / "in" / "hip.nii.gz")
    head, lesion = _balls()
    options = AnalysisOptions(segmenter=f"onnx:{model}", side="right", register=False)
    result = analyze_scans([Visit(image)], options)
    row = result.rows()[0]
    assert row["head_volume_ml"] == pytest.approx(head.sum() / 1000.0, abs=1e-9)  # 1 mm voxels
    assert row["lesion_volume_ml"] == pytest.approx(lesion.sum() / 1000.0, abs=1e-9)
    assert row["mask_source"] == "segmented"
    assert result.options.segmenter == f"onnx:{model}"


def test_onnx_segmenter_through_the_command_line(tmp_path, capsys):
    model, image = _model(tmp_path / "bands.onnx"), _image(tmp_path / "in" / "hip.nii.gz")
    out = tmp_path / "out"
    code = main(["analyze", image, "--segmenter", f"onnx:{model}", "--side", "right", "--no-register",
                 "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    with open(out / "volumes.csv", newline="") as handle:
        [row] = list(csv.DictReader(handle))
    assert float(row["lesion_volume_ml"]) == pytest.approx(_balls()[1].sum() / 1000.0)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["options"]["segmenter"] == f"onnx:{model}"


def test_missing_onnx_model_is_refused_in_one_line(tmp_path, capsys):
    image = _image(tmp_path / "in" / "hip.nii.gz")
    with pytest.raises(InputError, match="ONNX model .*does not exist"):
        analyze_scans([Visit(image)], AnalysisOptions(segmenter=f"onnx:{tmp_path / 'none.onnx'}", side="right"))
    assert main(["analyze", image, "--segmenter", "onnx:", "--out", str(tmp_path / "o")]) == 2
    assert "segmenter must be" in capsys.readouterr().err
