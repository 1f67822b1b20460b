"""The ONNX graph for TensorRT with cyclestream's native plugin: fused instance-norm nodes.

``fuse_plugin_nodes`` rewrites an exported generator so that every

    InstanceNormalization(x) → Relu           and   Add(skip, InstanceNormalization(x))

(and a bare InstanceNormalization) becomes one ``CycleStreamInstanceNorm`` node with attributes
``epsilon``, ``activation`` (0 none, 1 relu) and ``has_skip``, inputs ``x`` (and ``skip``).  In the
fp16 export the norms are wrapped as ``Cast(fp32) → InstanceNormalization → Cast(fp16)``; the plugin
takes fp16 storage and keeps its statistics in fp32, so the casts go too.

TensorRT's ONNX parser has no importer for that op type, so it looks the op type up as a plugin
name (version from ``plugin_version``, namespace from ``plugin_namespace``) and passes the node's
attributes as plugin fields: the ``CycleStreamInstanceNorm`` creator of
``libcyclestream_trt_plugins.so`` (``native/tensorrt``), whose kernels are the Triton kernels
compiled ahead of time.  So ``trtexec --onnx=model.plugins.onnx --staticPlugins=...so
--stronglyTyped`` builds and runs the engine without Python.  Only norms without affine parameters
(CycleGAN's: scale 1, bias 0) are fused; any other stays an InstanceNormalization.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cyclestream.engine.atomic import atomic_output

PLUGIN_OP = "CycleStreamInstanceNorm"
PLUGIN_DOMAIN = "com.cyclestream"
PLUGIN_VERSION = "1"
FLOAT, FLOAT16 = 1, 10  # onnx.TensorProto data types


@dataclass(frozen=True)
class PluginRewrite:
    path: Path
    fused: Counter[str]  # "relu" / "skip" / "plain" → nodes
    left: int  # InstanceNormalization nodes not fused


class _Graph:
    """Producers, consumers and constant values of a graph's tensors."""

    def __init__(self, graph: Any) -> None:
        from onnx import numpy_helper

        self.producer = {out: node for node in graph.node for out in node.output}
        self.consumers: dict[str, list[Any]] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.outputs = {o.name for o in graph.output}
        self.constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self.constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)

    def only_consumer(self, name: str) -> Any | None:
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 and name not in self.outputs else None


def _attr(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _is_cast(node: Any | None, to: int) -> bool:
    return node is not None and node.op_type == "Cast" and _attr(node, "to", None) == to


def _plain_affine(g: _Graph, norm: Any) -> bool:
    scale, bias = (g.constants.get(name) for name in norm.input[1:3])
    return scale is not None and bias is not None and bool((scale == 1).all()) and bool((bias == 0).all())


def _fusion(g: _Graph, norm: Any) -> tuple[list[Any], str, str | None, str, int] | None:
    """(nodes replaced, input x, skip, output, activation) for one norm, or None to leave it."""
    if len(norm.input) != 3 or not _plain_affine(g, norm):
        return None
    nodes, x, out = [norm], norm.input[0], norm.output[0]
    before, after = g.producer.get(x), g.only_consumer(out)
    if _is_cast(before, FLOAT) and _is_cast(after, FLOAT16) and g.only_consumer(x) is norm:
        nodes = [before, norm, after]  # fp16 export: statistics in fp32 are the plugin's own
        x, out = before.input[0], after.output[0]
        after = g.only_consumer(out)
    if after is not None and after.op_type == "Relu":
        return [*nodes, after], x, None, after.output[0], 1
    if after is not None and after.op_type == "Add" and len(after.input) == 2:
        skip = after.input[1] if after.input[0] == out else after.input[0]
        if skip != out:
            return [*nodes, after], x, skip, after.output[0], 0
    return nodes, x, None, out, 0


def fuse_plugin_nodes(model: Any) -> tuple[Any, Counter[str], int]:
    """``model`` (an onnx.ModelProto, changed in place) with the norms fused into plugin nodes."""
    from onnx import helper

    g = _Graph(model.graph)
    replaced: dict[int, Any] = {}  # id(last node of a fusion) → the plugin node that takes its place
    dropped: set[int] = set()
    fused: Counter[str] = Counter()
    left = 0
    for norm in list(model.graph.node):
        if norm.op_type != "InstanceNormalization":
            continue
        fusion = _fusion(g, norm)
        if fusion is None:
            left += 1
            continue
        nodes, x, skip, out, act = fusion
        plugin = helper.make_node(
            PLUGIN_OP,
            [x] if skip is None else [x, skip],
            [out],
            name=f"{norm.name or out}_fused",
            domain=PLUGIN_DOMAIN,
            epsilon=float(_attr(norm, "epsilon", 1e-5)),
            activation=act,
            has_skip=int(skip is not None),
            plugin_version=PLUGIN_VERSION,
            plugin_namespace="",
        )
        fused["skip" if skip is not None else "relu" if act else "plain"] += 1
        dropped.update(id(n) for n in nodes)
        replaced[id(nodes[-1])] = plugin
    new_nodes = [replaced.get(id(n), n) for n in model.graph.node if id(n) not in dropped or id(n) in replaced]
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    used = {name for node in model.graph.node for name in node.input}
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    if fused and not any(o.domain == PLUGIN_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(PLUGIN_DOMAIN, 1))
    return model, fused, left


def write_plugin_onnx(src: Path, dst: Path) -> PluginRewrite:
    """Read the export at ``src``, fuse, and write the plugin graph to ``dst`` atomically."""
    import onnx

    model, fused, left = fuse_plugin_nodes(onnx.load(str(src)))
    with atomic_output(dst) as tmp:
        onnx.save(model, str(tmp))
    return PluginRewrite(dst, fused, left)


def plugin_onnx_path(onnx_path: Path) -> Path:
    return onnx_path.with_name(onnx_path.stem + ".plugins.onnx")
