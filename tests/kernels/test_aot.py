"""The native side of the kernels: Triton AOT images, the C launcher's plan, and the CMake build.

No GPU here, so the C launcher cannot run.  What is checked instead, with the real tools:

- every image ``python -m cyclestream.kernels.aot`` writes is a cubin for the asked architecture
  whose kernel parameters (count and sizes, read back with the ``cuobjdump`` Triton ships) are the
  ones the C launcher passes, and the PTX targets the lowest architecture;
- the launcher's plan (one row per program, ``TILE``-element tiles, the merge specialization picked
  by tile count) run step by step with exactly the images' constexprs through Triton's interpreter
  equals the PyTorch reference;
- ``cmake`` configures everywhere and, where the CUDA headers are, builds the kernel library with
  the launcher's entry points, and says what it skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from cyclestream.kernels import aot
from cyclestream.kernels._dispatch import triton_installed
from cyclestream.kernels.instance_norm import instance_norm_act_reference, instance_norm_residual_reference

ROOT = Path(__file__).resolve().parents[2]
needs_triton = pytest.mark.skipif(not triton_installed(), reason="triton is not installed (pip install triton)")


def _compiler_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return env | {"TRITON_DEFAULT_FP_FUSION": "1"}


@pytest.fixture(scope="module")
def aot_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generator's output for sm_80 plus the PTX, made by the command CMake runs."""
    if not triton_installed():
        pytest.skip("triton is not installed (pip install triton)")
    out = tmp_path_factory.mktemp("aot")
    subprocess.run(
        [sys.executable, "-m", "cyclestream.kernels.aot", "--out", str(out), "--archs", "80", "--quiet"],
        check=True, env=_compiler_env(), timeout=600,
    )
    return out


def _cuobjdump() -> str:
    import triton

    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    if not tool.exists():
        pytest.skip(f"no cuobjdump in the triton wheel ({tool})")
    return str(tool)


def _param_sizes(cubin: Path) -> tuple[str, list[int]]:
    """The cubin's architecture and its parameter sizes in ordinal order (from EIATTR_KPARAM_INFO)."""
    text = subprocess.run([_cuobjdump(), "-elf", str(cubin)], check=True, capture_output=True, text=True).stdout
    info = re.findall(r"Ordinal\s*:\s*0x([0-9a-f]+).*?Size\s*:\s*0x([0-9a-f]+)", text)
    params = {int(ordinal, 16): int(size, 16) for ordinal, size in info}
    arch = re.search(r"\belf: .*\bsm=(\d+)", text)
    assert arch, "cuobjdump shows no architecture"
    return arch.group(1), [params[i] for i in sorted(params)]


@pytest.mark.slow
def test_generator_writes_header_table_and_one_source_per_target(aot_out: Path) -> None:
    header = (aot_out / "cs_kernel_images.h").read_text()
    assert f"#define CS_TILE {aot.TILE}" in header and f"#define CS_MAX_TILES {aot.MAX_TILES}" in header
    n = len(aot.variants())
    table = (aot_out / "cs_kernel_images_table.c").read_text()
    assert f"cs_kernel_image_count = {2 * n};" in table
    for tag in ("sm80", "ptx80"):
        source = (aot_out / f"cs_kernel_images_{tag}.c").read_text()
        assert source.count("const cs_kernel_image cs_") == n
        assert len(list((aot_out / "images" / tag).iterdir())) == n


def test_cubins_have_the_parameters_the_c_launcher_passes(aot_out: Path) -> None:
    cubins = sorted((aot_out / "images" / "sm80").glob("*.cubin"))
    assert len(cubins) == len(aot.variants())
    for cubin, variant in zip(cubins, aot.variants(), strict=True):
        arch, sizes = _param_sizes(cubin)
        assert arch == "80", cubin
        assert sizes == variant.param_bytes, f"{cubin.name}: {variant.kernel} parameters"  # + Triton's scratch ptrs
    launcher = (ROOT / "native" / "instance_norm" / "cs_instance_norm.c").read_text()
    # the launcher's argument arrays have as many entries as the kernels take
    for role, aligned, count in (("partial", 0, 13), ("combine", 0, 10), ("apply", 0, 13), ("partial", 1, 12),
                                 ("apply", 1, 12)):  # fmt: skip
        variant = next(v for v in aot.variants() if v.role == role and v.aligned == aligned)
        assert len(variant.param_bytes) == count
        name = f"{role}_aligned" if aligned else role
        args = re.search(rf"void \*{name}_args\[\] = \{{(.*?)\}};", launcher, re.S)
        assert args and args.group(1).count("&") == count, name


def test_aligned_images_use_vector_loads_and_the_general_ones_scalar(aot_out: Path) -> None:
    """The point of the aligned images: 16-byte ``ld/st.global.v4`` where the general ones load element by
    element (with a runtime stride and no divisibility known, Triton cannot vectorize)."""
    ptx = sorted((aot_out / "images" / "ptx80").glob("*.ptx"))
    checked = 0
    for path, variant in zip(ptx, aot.variants(), strict=True):
        if variant.role == "combine":
            continue
        text = path.read_text()
        vector_loads = len(re.findall(r"\bld\.global(?:\.\w+)*\.v4\.", text))
        if variant.aligned:
            assert path.stem.endswith("_aligned") and vector_loads >= 1, path.name
            if variant.role == "apply":
                assert re.search(r"\bst\.global(?:\.\w+)*\.v4\.", text), path.name
        else:
            assert vector_loads == 0, path.name
            scalar = "b16" if variant.dtype == aot.DTYPES["fp16"] else "b32"
            assert re.search(rf"\bld\.global(?:\.\w+)*\.{scalar}\b", text), path.name
        checked += 1
    assert checked == 2 * 2 * 5  # (partial + 4 apply epilogues) × 2 dtypes × aligned or not


def test_ptx_targets_the_lowest_architecture(aot_out: Path) -> None:
    for ptx in (aot_out / "images" / "ptx80").glob("*.ptx"):
        text = ptx.read_text()
        assert re.search(r"^\.target sm_80\b", text, re.M), ptx.name
        assert ".entry _" in text


# ----------------------------------------------------------------------------------------------------
# The launcher's plan through the interpreter


def _native_plan(triton_kernels: ModuleType, x: torch.Tensor, act: int, skip: torch.Tensor | None, eps: float):
    """cs_instance_norm_enqueue, step by step, with the constexprs of the AOT images."""
    n, c, h, w = x.shape
    hw, rows = h * w, n * c
    n_tiles = -(-hw // aot.TILE)
    partial = next(v for v in aot.variants() if v.role == "partial")
    count, tmean, m2 = (torch.empty(rows * n_tiles) for _ in range(3))
    triton_kernels._partial_stats_kernel[(rows, n_tiles)](
        x, count, tmean, m2, c, hw, c * hw, hw, 1, c, n_tiles, **partial.constexprs, num_warps=partial.num_warps
    )
    combine = min((v for v in aot.variants() if v.role == "combine" and v.block_t >= n_tiles), key=lambda v: v.block_t)
    mean, rstd = torch.empty(rows), torch.empty(rows)
    triton_kernels._combine_stats_kernel[(-(-rows // combine.block_r),)](
        count, tmean, m2, mean, rstd, rows, n_tiles, eps, **combine.constexprs
    )
    apply = next(v for v in aot.variants() if v.role == "apply" and (v.act, v.has_skip) == (act, skip is not None))
    out = torch.empty_like(x)
    triton_kernels._apply_kernel[(rows, n_tiles)](
        x, x if skip is None else skip, out, mean, rstd, c, hw, c * hw, hw, 1, c, **apply.constexprs
    )
    return out, combine.block_t


@needs_triton
@pytest.mark.parametrize(
    ("shape", "block_t"),
    [((2, 3, 8, 8), 16), ((1, 2, 70, 130), 16), ((1, 1, 256, 272), 128)],  # 1, 3 and 17 tiles a row
)
@pytest.mark.parametrize("epilogue", ["relu", "skip"])
def test_native_plan_matches_reference(triton_kernels: ModuleType, shape, block_t: int, epilogue: str) -> None:
    torch.manual_seed(0)
    x = torch.randn(shape) * 3 + 1
    skip = torch.randn(shape) if epilogue == "skip" else None
    out, used = _native_plan(triton_kernels, x, 1 if epilogue == "relu" else 0, skip, 1e-5)
    expected = instance_norm_act_reference(x, "relu") if skip is None else instance_norm_residual_reference(x, skip)
    assert used == block_t
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------------------------
# CMake


def _cmake(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["cmake", *args], cwd=cwd, env=_compiler_env(), capture_output=True, text=True, timeout=900)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
def test_cmake_configures_and_builds_what_this_machine_can(tmp_path: Path) -> None:
    build = tmp_path / "build"
    configure = _cmake(
        "-S", str(ROOT), "-B", str(build), "-DCYCLESTREAM_CUDA_ARCHS=80", f"-DPython3_EXECUTABLE={sys.executable}",
        cwd=tmp_path,
    )
    assert configure.returncode == 0, configure.stderr
    log = configure.stdout
    if "skipping all native parts" in log:
        pytest.skip("no CUDA toolkit headers: configure succeeded and skipped the native parts")
    assert "building the kernel library" in log, log
    trt = "building the TensorRT plugin library" in log
    assert trt or "skipping the TensorRT plugin library" in log, log
    built = _cmake("--build", str(build), "-j2", cwd=tmp_path)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    library = build / "libcyclestream_instance_norm.a"
    symbols = subprocess.run(["nm", "-g", "--defined-only", str(library)], capture_output=True, text=True).stdout
    for name in ("cs_instance_norm_enqueue", "cs_instance_norm_workspace_size", "cs_kernel_images"):
        assert re.search(rf"\b[TDR] {name}$", symbols, re.M), name
    if trt:
        assert (build / "libcyclestream_trt_plugins.so").exists()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
def test_cmake_configure_without_cuda_succeeds_and_says_what_it_skips(tmp_path: Path) -> None:
    configure = _cmake(
        "-S", str(ROOT), "-B", str(tmp_path / "build"), "-DCMAKE_DISABLE_FIND_PACKAGE_CUDAToolkit=ON",
        f"-DPython3_EXECUTABLE={sys.executable}", cwd=tmp_path,
    )  # fmt: skip
    assert configure.returncode == 0, configure.stderr
    assert "cyclestream: skipping all native parts: CUDA toolkit not found" in configure.stdout
    assert not list((tmp_path / "build").glob("*.a"))
