"""The C launcher of the AOT kernels (native/instance_norm/cs_instance_norm.c), run on the host.

No GPU here, so the launcher is compiled with the C compiler against CUDA's headers and linked with
``fake_cuda_driver.c``, a recording stand-in for the eight driver calls it makes, and an image table
written by ``kernels/aot.py`` from placeholder images (the real cubins are checked in test_aot.py).
What runs is the launcher's own code: the plan (grids, tiles, merge specialization), the workspace
layout, every kernel argument decoded with the size the cubin declares, the choice of image by the
device's architecture, per-context loading, and its error reporting.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from cyclestream.kernels import aot

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = ROOT / "native" / "instance_norm"
FAKE_DRIVER = Path(__file__).with_name("fake_cuda_driver.c")
ROLES = {"partial": 0, "combine": 1, "apply": 2}
FAKE_SHARED = 512
ALIGN = 256
CUDA_ERROR_NO_BINARY_FOR_GPU, CUDA_ERROR_LAUNCH_FAILED = 209, 719
X, SKIP, OUT, WORKSPACE, STREAM = 0x7F0000100000, 0x7F0000200000, 0x7F0000300000, 0x7F0000400000, 0x77


class Desc(ctypes.Structure):
    _fields_ = [("n", ctypes.c_int64), ("c", ctypes.c_int64), ("hw", ctypes.c_int64), ("dtype", ctypes.c_int),
                ("act", ctypes.c_int), ("has_skip", ctypes.c_int), ("eps", ctypes.c_float)]  # fmt: skip


class Launch(ctypes.Structure):
    _fields_ = [
        *((name, ctypes.c_int) for name in ("role", "dtype", "act", "has_skip", "block_t", "sm", "is_ptx", "aligned")),
        ("grid", ctypes.c_uint * 3), ("block", ctypes.c_uint * 3), ("shared", ctypes.c_uint),
        ("stream", ctypes.c_size_t), ("n_params", ctypes.c_int), ("params", ctypes.c_uint64 * 16),
    ]  # fmt: skip


def _cuda_include() -> Path | None:
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    if nvcc := shutil.which("nvcc"):
        candidates.append(str(Path(nvcc).resolve().parents[1]))
    for root in filter(None, candidates):
        if (Path(root) / "include" / "cuda.h").is_file():
            return Path(root) / "include"
    return None


def _placeholder_images() -> dict[str, list[aot.Image]]:
    """What ``aot.build`` would give for sm_80, sm_90 and the sm_80 PTX, with stand-in bytes."""
    def image(variant: aot.Variant, sm: int, ptx: bool) -> aot.Image:
        data = f"{'ptx' if ptx else 'cubin'} sm_{sm} {variant.kernel}".encode() + b"\0"
        return aot.Image(variant, sm, ptx, variant.kernel, data, FAKE_SHARED)

    images = {f"sm{sm}": [image(v, sm, False) for v in aot.variants()] for sm in (80, 90)}
    images["ptx80"] = [image(v, 80, True) for v in aot.variants()]
    return images


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    include = _cuda_include()
    compiler = shutil.which("cc") or shutil.which("gcc")
    if include is None or compiler is None:
        pytest.skip("needs a C compiler and CUDA's headers (cuda.h; CUDA_HOME) to build the launcher")
    out = tmp_path_factory.mktemp("launcher")
    sources = [p for p in aot.write_sources(_placeholder_images(), out / "images") if p.suffix == ".c"]
    target = out / "libcs_launcher_fake_driver.so"
    subprocess.run(
        [compiler, "-std=c11", "-shared", "-fPIC", "-O1", "-Wall", "-Werror", f"-I{LAUNCHER}", f"-I{out / 'images'}",
         f"-I{include}", str(LAUNCHER / "cs_instance_norm.c"), str(FAKE_DRIVER), *map(str, sources),
         "-o", str(target), "-lpthread"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    library = ctypes.CDLL(str(target))
    library.cs_instance_norm_enqueue.argtypes = [ctypes.POINTER(Desc), *[ctypes.c_uint64] * 4, ctypes.c_void_p]
    library.cs_instance_norm_workspace_size.restype = ctypes.c_size_t
    library.cs_instance_norm_last_error.restype = ctypes.c_char_p
    library.fake_get_launch.restype = ctypes.POINTER(Launch)
    for variant in aot.variants():  # the sizes each kernel declares, per role and alignment
        sizes = variant.param_bytes
        role, aligned = ROLES[variant.role], variant.aligned
        library.fake_set_param_sizes(role, aligned, (ctypes.c_int * len(sizes))(*sizes), len(sizes))
    return library


def _run(
    lib: ctypes.CDLL, desc: Desc, *, sm: int = 86, context: int = 1, x: int = X, skip: int = SKIP, out: int = OUT
) -> tuple[int, list[Launch]]:
    lib.fake_set_device(sm, context)
    lib.fake_reset_launches()
    rc = lib.cs_instance_norm_enqueue(ctypes.byref(desc), x, skip, out, WORKSPACE, STREAM)
    return rc, [lib.fake_get_launch(i).contents for i in range(lib.fake_launch_count())]


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def _params(launch: Launch) -> list[int]:
    return list(launch.params[: launch.n_params])


def test_one_norm_is_three_launches_with_the_kernels_arguments(lib: ctypes.CDLL) -> None:
    n, c, hw = 2, 3, 70 * 130  # 9,100 elements a row: 3 tiles
    desc = Desc(n, c, hw, 0, 1, 0, 1e-5)
    rc, launches = _run(lib, desc)
    assert rc == 0 and lib.cs_instance_norm_last_error() == b""
    rows, tiles = n * c, 3
    partials = _aligned(rows * tiles * 4)
    count, tmean, m2 = WORKSPACE, WORKSPACE + partials, WORKSPACE + 2 * partials
    mean, rstd = WORKSPACE + 3 * partials, WORKSPACE + 3 * partials + _aligned(rows * 4)
    assert lib.cs_instance_norm_workspace_size(ctypes.byref(desc)) == 3 * partials + 2 * _aligned(rows * 4)
    partial, combine, apply = launches
    assert [launch.role for launch in launches] == [0, 1, 2]
    assert all(launch.stream == STREAM and launch.shared == FAKE_SHARED for launch in launches)
    assert (partial.sm, partial.is_ptx, partial.dtype) == (80, 0, 0)  # sm_86 runs the sm_80 cubin
    assert list(partial.grid) == [rows, tiles, 1] and list(partial.block) == [aot.TILE_WARPS * 32, 1, 1]
    assert _params(partial) == [X, count, tmean, m2, c, hw, c * hw, hw, 1, c, tiles, 0, 0]
    assert combine.block_t == 16 and list(combine.grid) == [1, 1, 1]  # 64 rows a program
    assert list(combine.block) == [aot.COMBINE_WARPS * 32, 1, 1]
    eps_bits = struct.unpack("<I", struct.pack("<f", 1e-5))[0]
    assert _params(combine) == [count, tmean, m2, mean, rstd, rows, tiles, eps_bits, 0, 0]
    assert (apply.act, apply.has_skip, apply.dtype) == (1, 0, 0) and list(apply.grid) == [rows, tiles, 1]
    assert _params(apply) == [X, X, OUT, mean, rstd, c, hw, c * hw, hw, 1, c, 0, 0]  # no skip: x in its slot
    assert partial.aligned == apply.aligned == 0  # 9,100 elements a row is no multiple of 16: general images


@pytest.mark.parametrize(
    ("hw", "x", "skip", "out", "has_skip", "aligned"),
    [(64 * 64, X, SKIP, OUT, 1, 1), (270 * 480, X + 16, SKIP + 32, OUT + 48, 1, 1),  # 16-byte aligned
     (64 * 64, X + 2, SKIP, OUT, 1, 0), (64 * 64, X, SKIP, OUT + 4, 0, 0), (64 * 64, X, SKIP + 8, OUT, 1, 0),
     (64 * 64, X, SKIP + 8, OUT, 0, 1),  # skip is not read without has_skip
     (64 * 64 + 8, X, SKIP, OUT, 0, 0)],  # rows not a multiple of 16
)  # fmt: skip
def test_aligned_images_run_when_pointers_and_rows_allow_else_the_general_ones(
    lib: ctypes.CDLL, hw: int, x: int, skip: int, out: int, has_skip: int, aligned: int
) -> None:
    c, tiles = 4, -(-hw // aot.TILE)
    rc, (partial, combine, apply) = _run(lib, Desc(1, c, hw, 1, 1, has_skip, 1e-5), x=x, skip=skip, out=out)
    assert rc == 0 and (partial.aligned, apply.aligned, combine.aligned) == (aligned, aligned, 0)
    count, partials = WORKSPACE, _aligned(c * tiles * 4)
    mean, rstd = WORKSPACE + 3 * partials, WORKSPACE + 3 * partials + _aligned(c * 4)
    stride = [] if aligned else [1]  # the aligned images have the unit stride compiled in
    assert _params(partial) == [x, count, count + partials, count + 2 * partials, c, hw, c * hw, hw, *stride, c,
                                tiles, 0, 0]  # fmt: skip
    assert _params(apply) == [x, skip if has_skip else x, out, mean, rstd, c, hw, c * hw, hw, *stride, c, 0, 0]


def test_fp16_residual_tail_uses_the_fp16_skip_images(lib: ctypes.CDLL) -> None:
    rc, (partial, _, apply) = _run(lib, Desc(1, 256, 64 * 64, 1, 0, 1, 1e-5))
    assert rc == 0
    assert partial.dtype == 1 and (apply.dtype, apply.act, apply.has_skip) == (1, 0, 1)
    assert _params(apply)[:3] == [X, SKIP, OUT] and list(apply.grid) == [256, 1, 1]


@pytest.mark.parametrize(("hw", "block_t", "rows_per_program"), [(4096, 16, 64), (4096 * 17, 128, 16),
                                                                 (1080 * 1920, 1024, 2)])  # fmt: skip
def test_merge_kernel_is_chosen_by_tiles_per_row(lib: ctypes.CDLL, hw: int, block_t: int, rows_per_program: int,
                                                 ) -> None:
    rc, (partial, combine, _) = _run(lib, Desc(1, 64, hw, 0, 0, 0, 1e-5))
    assert rc == 0 and partial.grid[1] == -(-hw // aot.TILE)
    assert combine.block_t == block_t and combine.grid[0] == -(-64 // rows_per_program)


def test_images_are_chosen_per_device_and_loaded_once_per_context(lib: ctypes.CDLL) -> None:
    desc = Desc(1, 4, 256, 0, 1, 0, 1e-5)
    for context, sm, expected in [(10, 90, (90, 0)), (11, 89, (80, 0)), (12, 120, (80, 1)), (13, 80, (80, 0))]:
        before = lib.fake_module_loads()
        rc, launches = _run(lib, desc, sm=sm, context=context)
        assert rc == 0 and {(x.sm, x.is_ptx) for x in launches} == {expected}, sm
        assert lib.fake_module_loads() - before == len(aot.variants())  # every kernel, into the new context
        rc, _ = _run(lib, desc, sm=sm, context=context)
        assert rc == 0 and lib.fake_module_loads() - before == len(aot.variants())  # not again
    rc, launches = _run(lib, desc, sm=75, context=14)
    assert rc == CUDA_ERROR_NO_BINARY_FOR_GPU and not launches
    assert b"no kernel image for sm_75" in lib.cs_instance_norm_last_error()


@pytest.mark.parametrize(
    ("desc", "message"),
    [(Desc(1, 3, aot.TILE * aot.MAX_TILES + 1, 0, 0, 0, 1e-5), b"exceed"), (Desc(0, 3, 16, 0, 0, 0, 1e-5), b"empty"),
     (Desc(1, 3, 16, 7, 0, 0, 1e-5), b"dtype"), (Desc(1, 3, 16, 0, 2, 0, 1e-5), b"activation")],
)  # fmt: skip
def test_unsupported_inputs_are_refused_before_any_launch(lib: ctypes.CDLL, desc: Desc, message: bytes) -> None:
    assert lib.cs_instance_norm_check(ctypes.byref(desc)) == -1
    assert message in lib.cs_instance_norm_last_error()
    assert lib.cs_instance_norm_workspace_size(ctypes.byref(desc)) == 0
    rc, launches = _run(lib, desc)
    assert rc != 0 and not launches


def test_a_failed_launch_is_returned_with_the_step_that_failed(lib: ctypes.CDLL) -> None:
    lib.fake_fail_launches(CUDA_ERROR_LAUNCH_FAILED)
    try:
        rc, launches = _run(lib, Desc(1, 3, 64, 0, 0, 0, 1e-5))
    finally:
        lib.fake_fail_launches(0)
    assert rc == CUDA_ERROR_LAUNCH_FAILED and not launches
    expected = b"cyclestream instance norm: partial statistics kernel: unspecified launch failure (fake)"
    assert lib.cs_instance_norm_last_error() == expected
