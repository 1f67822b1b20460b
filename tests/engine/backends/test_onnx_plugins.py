"""The plugin ONNX graph (what TensorRT parses with libcyclestream_trt_plugins.so) under ONNX Runtime.

ONNX Runtime has no CycleStreamInstanceNorm, so onnxruntime-extensions registers Python custom ops
that compute it with the kernels' PyTorch reference.  Running the rewritten graph with them checks
what the rewrite decides: which nodes become plugins, their inputs (x, skip), attributes (epsilon,
activation, has_skip) and wiring — against the eager model.  onnxruntime-extensions binds an op to
one input count, so the test renames each node to a per-input-count op type in the extensions'
domain before running; and since its Python ops take no float16, a half-precision node is served
as Cast(fp32) → op → Cast(fp16), which is what the plugin does inside (fp16 storage, fp32 math).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cyclestream.engine.backends.export import cached_onnx, export_onnx, onnx_op_counts
from cyclestream.engine.backends.onnx_plugins import (
    PLUGIN_DOMAIN,
    PLUGIN_OP,
    plugin_onnx_path,
    write_plugin_onnx,
)
from cyclestream.engine.checkpoint import LoadedModel
from cyclestream.engine.jobs.verify import TOLERANCE, eager_output, model_input, relative_l2
from cyclestream.kernels.instance_norm import instance_norm_act_reference, instance_norm_residual_reference

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'cyclestream[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="ONNX Runtime is not installed (pip install 'cyclestream[onnx]')")
pytest.importorskip("onnxscript", reason="the dynamo ONNX exporter needs onnxscript")
ortx = pytest.importorskip("onnxruntime_extensions", reason="pip install onnxruntime-extensions (dev extra)")


CONTRIB = "ai.onnx.contrib"  # the domain onnxruntime-extensions serves Python ops from


def _reference(x: np.ndarray, skip: np.ndarray | None, epsilon: float, activation: int) -> np.ndarray:
    t = torch.from_numpy(x).float()
    if skip is not None:
        assert activation == 0
        y = instance_norm_residual_reference(t, torch.from_numpy(skip).float(), eps=epsilon)
    else:
        y = instance_norm_act_reference(t, "relu" if activation else None, eps=epsilon)
    return y.numpy().astype(x.dtype)


def _register_python_ops() -> None:
    from onnxruntime_extensions import PyCustomOpDef, onnx_op

    f32, i64 = PyCustomOpDef.dt_float, PyCustomOpDef.dt_int64
    attrs = {"epsilon": f32, "activation": i64, "has_skip": i64}

    @onnx_op(op_type=f"{PLUGIN_OP}_1", inputs=[f32], outputs=[f32], attrs=attrs)
    def one(x: np.ndarray, **kw: object) -> np.ndarray:
        assert kw["has_skip"] == 0
        return _reference(x, None, float(kw["epsilon"]), int(kw["activation"]))

    @onnx_op(op_type=f"{PLUGIN_OP}_2", inputs=[f32, f32], outputs=[f32], attrs=attrs)
    def two(x: np.ndarray, skip: np.ndarray, **kw: object) -> np.ndarray:
        assert kw["has_skip"] == 1
        return _reference(x, skip, float(kw["epsilon"]), int(kw["activation"]))


_register_python_ops()


def _session_for(path: Path, half: bool, tmp_path: Path) -> object:
    """An ONNX Runtime session over the plugin graph, each plugin node served by a Python op."""
    from onnx import TensorProto, helper

    model = onnx.load(str(path))
    nodes = []
    for node in model.graph.node:
        if node.op_type != PLUGIN_OP:
            nodes.append(node)
            continue
        node.op_type, node.domain = f"{PLUGIN_OP}_{len(node.input)}", CONTRIB
        kept = [a for a in node.attribute if a.name not in ("plugin_version", "plugin_namespace")]  # TensorRT's
        del node.attribute[:]
        node.attribute.extend(kept)
        if not half:
            nodes.append(node)
            continue
        inputs, output = list(node.input), node.output[0]
        cast = [f"{i}_f32_for_{output}" for i in inputs]
        nodes += [helper.make_node("Cast", [i], [c], to=TensorProto.FLOAT) for i, c in zip(inputs, cast, strict=True)]
        del node.input[:]
        node.input.extend(cast)
        node.output[0] = f"{output}_f32"
        nodes += [node, helper.make_node("Cast", [f"{output}_f32"], [output], to=TensorProto.FLOAT16)]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.opset_import.append(helper.make_opsetid(CONTRIB, 1))
    served = tmp_path / f"served_{int(half)}.onnx"
    onnx.save(model, str(served))
    options = ort.SessionOptions()
    options.register_custom_ops_library(ortx.get_library_path())
    return ort.InferenceSession(str(served), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def model(export_model: LoadedModel) -> LoadedModel:
    return export_model


@pytest.mark.slow
def test_every_norm_becomes_a_plugin_node_with_its_epilogue(model: LoadedModel, tmp_path: Path) -> None:
    src = cached_onnx(model, "fp32", tmp_path)
    report = write_plugin_onnx(src, plugin_onnx_path(src))
    # ResNet with 2 blocks: stem + 2 downsampling + 2 upsampling norms take ReLU (5 + one per block),
    # each block's second norm is added to its input
    assert dict(report.fused) == {"relu": 7, "skip": 2} and report.left == 0
    counts = onnx_op_counts(report.path)
    assert counts[PLUGIN_OP] == 9 and "InstanceNormalization" not in counts
    assert counts.get("Relu", 0) == 0 and counts.get("Add", 0) == 0
    graph = onnx.load(str(report.path))
    onnx.checker.check_model(graph)
    assert any(o.domain == PLUGIN_DOMAIN for o in graph.opset_import)
    node = next(n for n in graph.graph.node if n.op_type == PLUGIN_OP and len(n.input) == 2)
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["has_skip"] == 1 and attrs["activation"] == 0 and attrs["plugin_version"] == b"1"
    assert attrs["epsilon"] == pytest.approx(1e-5)


@pytest.mark.slow
def test_plugin_graph_matches_eager_fp32(model: LoadedModel, tmp_path: Path) -> None:
    src = cached_onnx(model, "fp32", tmp_path)
    plugin = write_plugin_onnx(src, plugin_onnx_path(src)).path
    session = _session_for(plugin, False, tmp_path)
    for h, w in ((32, 48), (64, 40)):  # one graph, two frame sizes
        x = model_input(model, torch.rand(2, h, w, 3).mul(255).to(torch.uint8))
        (y,) = session.run(None, {"input": x.numpy()})
        assert relative_l2(torch.from_numpy(y), eager_output(model, x)) < TOLERANCE["fp32"]


@pytest.mark.slow
def test_fp16_plugin_graph_drops_the_casts_and_matches_eager(model: LoadedModel, tmp_path: Path) -> None:
    half = export_onnx(model, tmp_path / "half.onnx", precision="fp16").path
    report = write_plugin_onnx(half, plugin_onnx_path(half))
    assert sum(report.fused.values()) == 9
    assert onnx_op_counts(report.path).get("Cast", 0) <= onnx_op_counts(half)["Cast"] - 2 * 9
    x = model_input(model, torch.rand(1, 32, 32, 3).mul(255).to(torch.uint8))
    (y,) = _session_for(report.path, True, tmp_path).run(None, {"input": x.half().numpy()})
    assert relative_l2(torch.from_numpy(y).float(), eager_output(model, x)) < TOLERANCE["fp16"]


def test_norms_with_affine_parameters_are_left_alone(tmp_path: Path) -> None:
    from onnx import TensorProto, helper, numpy_helper

    scale = numpy_helper.from_array(np.full(3, 2.0, np.float32), "scale")
    bias = numpy_helper.from_array(np.zeros(3, np.float32), "bias")
    graph = helper.make_graph(
        [
            helper.make_node("InstanceNormalization", ["x", "scale", "bias"], ["n"]),
            helper.make_node("Relu", ["n"], ["y"]),
        ],
        "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])],
        [scale, bias],
    )
    src = tmp_path / "affine.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(src))
    report = write_plugin_onnx(src, tmp_path / "affine.plugins.onnx")
    assert not report.fused and report.left == 1
    assert onnx_op_counts(report.path) == {"InstanceNormalization": 1, "Relu": 1}
