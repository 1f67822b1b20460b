"""Generators without an image input (StyleGAN2, DCGAN) on a backend: per-frame latents (N, D) → images
(N, C, H, W) on the family's value range, through PyTorch eager, torch.compile, ONNX Runtime or OpenVINO.

What runs is the module the job hands over: the per-frame part of the generator (a StyleGAN2's
synthesis of w, a DCGAN's whole network on z).  What comes before it (each seed's z, the mapping to w,
truncation) is computed once per seed in PyTorch, the same for every backend.  A StyleGAN2's styled
convolutions are grouped convolutions with one group per sample, which ONNX needs as a constant, so
graphs are exported at a fixed batch: every call is cut into batches of that size and the last one
padded (the padding rows dropped), on every backend alike.  ``auto`` is eager here (nothing is
measured); TensorRT is not offered.  The exported graph is cached like a translating model's
(engine/backends/cache.py): by the model's digest, the graph's name, the batch and the exporting
libraries' versions.
"""

from __future__ import annotations

import copy
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from cyclestream.engine.backends.cache import (
    checked_entry,
    default_cache_dir,
    entry_lock,
    key_digest,
    model_digest,
    onnx_key,
    store_entry,
)
from cyclestream.engine.backends.export import OPSET, OUTPUT_NAME, _quiet_exporter, open_or_remake
from cyclestream.engine.checkpoint import LoadedModel
from cyclestream.engine.errors import BackendError, first_line

log = logging.getLogger("cyclestream")

LATENT_BACKENDS = ("eager", "compile", "onnxruntime", "openvino")
LATENT_NAME = "latent"


class LatentRunner(ABC):
    """Latents → images at a fixed batch; ``__call__`` takes any number of rows."""

    name: ClassVar[str]

    def __init__(self, module: nn.Module, batch: int, device: torch.device) -> None:
        self.batch, self.device = batch, device

    @abstractmethod
    def infer(self, latents: torch.Tensor) -> torch.Tensor:
        """(batch, D) float32 latents on the runner's device → (batch, C, H, W) float32 images."""

    @torch.inference_mode()
    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        out = []
        for start in range(0, latents.shape[0], self.batch):
            chunk = latents[start : start + self.batch].to(self.device, torch.float32)
            rows = chunk.shape[0]
            if rows < self.batch:  # the last, shorter batch: padded with copies of its last row
                chunk = torch.cat([chunk, chunk[-1:].expand(self.batch - rows, -1)])
            out.append(self.infer(chunk.contiguous())[:rows])
        return torch.cat(out)

    def describe(self) -> str:
        return f"{self.name} ({self.device.type}, fp32, batch {self.batch})"


class EagerLatent(LatentRunner):
    name = "eager"

    def __init__(self, module: nn.Module, batch: int, device: torch.device) -> None:
        super().__init__(module, batch, device)
        self.module = module.to(device).eval()

    def infer(self, latents: torch.Tensor) -> torch.Tensor:
        return self.module(latents)


class CompiledLatent(LatentRunner):
    name = "compile"

    def __init__(self, module: nn.Module, batch: int, device: torch.device) -> None:
        from cyclestream.engine.backends.compiled import find_cxx

        super().__init__(module, batch, device)
        if device.type == "cpu" and find_cxx() is None:
            raise BackendError("torch.compile on the CPU needs a C++ compiler: apt-get install g++")
        self.module = torch.compile(module.to(device).eval(), dynamic=False)

    def infer(self, latents: torch.Tensor) -> torch.Tensor:
        try:
            return self.module(latents)
        except Exception as e:
            raise BackendError(f"torch.compile failed: {first_line(e)}") from e


def export_latent_onnx(module: nn.Module, batch: int, size: int, path: Path) -> str:
    """Write ``module`` (latents (batch, size) → images) as an ONNX graph at ``path``; the exporter used."""
    module = copy.deepcopy(module).eval().float()  # never touch the caller's model
    example = (torch.zeros(batch, size),)
    names = {"input_names": [LATENT_NAME], "output_names": [OUTPUT_NAME]}
    with _quiet_exporter(), torch.no_grad():
        try:
            program = torch.onnx.export(module, example, dynamo=True, opset_version=OPSET, verbose=False, **names)
            if program is None:
                raise BackendError("the dynamo ONNX exporter returned no program")
            program.save(str(path))
            return "dynamo"
        except Exception as e:
            log.warning("dynamo ONNX exporter failed (%s); trying the TorchScript exporter", first_line(e))
        try:
            torch.onnx.export(module, example, str(path), dynamo=False, opset_version=min(OPSET, 17), **names)
        except Exception as e:
            raise BackendError(f"ONNX export failed with both exporters: {first_line(e)}") from e
    return "torchscript"


def cached_latent_onnx(model: LoadedModel, module: nn.Module, graph: str, batch: int, size: int) -> tuple[Path, bool]:
    """The cached graph of ``module`` (named ``graph``) for ``model`` at ``batch``, and whether it was made now."""
    key = {**onnx_key(model_digest(model), "fp32", OPSET), "graph": graph, "batch": batch}
    path = default_cache_dir() / "onnx" / f"{key_digest(key)}.onnx"
    with entry_lock(path):
        if checked_entry(path, key) is not None:
            return path, False
        log.info("exporting %s's %s to ONNX (batch %d, once; cached in %s)", model.spec.official_name, graph, batch,
                 path.parent)  # fmt: skip
        store_entry(path, key, lambda tmp: export_latent_onnx(module, batch, size, tmp))
    return path, True


class _GraphLatent(LatentRunner):
    """A runner of the module's exported ONNX graph, on the CPU."""

    def __init__(self, module: nn.Module, batch: int, device: torch.device, *, model: LoadedModel, graph: str,
                 size: int) -> None:  # fmt: skip
        super().__init__(module, batch, device)
        if device.type != "cpu":
            raise BackendError(f"the {self.name} backend runs on the CPU; use --device cpu or --backend eager")

        def entry() -> tuple[Path, bool]:
            return cached_latent_onnx(model, module, graph, batch, size)

        self.open(entry)

    @abstractmethod
    def open(self, entry: Callable[[], tuple[Path, bool]]) -> None:
        """Open the graph of ``entry()`` (through ``open_or_remake``)."""


class OnnxRuntimeLatent(_GraphLatent):
    name = "onnxruntime"

    def open(self, entry: Callable[[], tuple[Path, bool]]) -> None:
        from cyclestream.engine.backends.onnxruntime import import_onnxruntime, make_session

        import_onnxruntime()
        self._session = open_or_remake(entry, make_session)

    def infer(self, latents: torch.Tensor) -> torch.Tensor:
        (y,) = self._session.run(None, {LATENT_NAME: latents.numpy()})
        return torch.from_numpy(y)


class OpenVINOLatent(_GraphLatent):
    name = "openvino"

    def open(self, entry: Callable[[], tuple[Path, bool]]) -> None:
        from cyclestream.engine.backends.openvino import import_openvino

        core = import_openvino().Core()
        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_NUM_THREADS": torch.get_num_threads()}  # fmt: skip
        try:  # OpenVINO raises RuntimeError for a graph it cannot read or compile
            compiled = open_or_remake(entry, lambda path: core.compile_model(core.read_model(str(path)), "CPU", config),
                                      damaged=RuntimeError)  # fmt: skip
        except BackendError:
            raise
        except Exception as e:
            raise BackendError(f"OpenVINO could not compile the model: {first_line(e)}") from e
        self._request = compiled.create_infer_request()

    def infer(self, latents: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self._request.infer({0: latents.numpy()})[0])


def open_latent_runner(name: str, model: LoadedModel, module: nn.Module, *, graph: str, size: int, batch: int,
                       device: torch.device) -> LatentRunner:  # fmt: skip
    """The runner of ``--backend name`` for ``module`` (latents of ``size`` values → images), at ``batch``."""
    if name == "auto":
        name = "eager"
    if name not in LATENT_BACKENDS:
        raise BackendError(f"the {name} backend does not run a {model.family.name} model (a latent input, no image); "
                           f"use --backend {', '.join(LATENT_BACKENDS)}")  # fmt: skip
    if name == "eager":
        return EagerLatent(module, batch, device)
    if name == "compile":
        return CompiledLatent(module, batch, device)
    runner = OnnxRuntimeLatent if name == "onnxruntime" else OpenVINOLatent
    return runner(module, batch, device, model=model, graph=graph, size=size)
