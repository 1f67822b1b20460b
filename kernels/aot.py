"""Ahead-of-time build of the instance-norm Triton kernels for the native library (no GPU needed).

``python -m cyclestream.kernels.aot --out DIR --archs 75,80,90`` compiles the kernels of
``instance_norm_triton.py`` with ``triton.compile`` for each NVIDIA architecture into cubins, plus one
PTX (of the lowest architecture) that the driver JIT-compiles on GPUs newer than every cubin, and
writes them as C arrays with a table describing each image (``cs_kernel_images.h`` and one
``cs_kernel_images_<arch>.c`` per architecture).  ``native/instance_norm/cs_instance_norm.c`` loads
them with the CUDA driver API and launches them; ``CMakeLists.txt`` runs this module at build time.

Why not ``python -m triton.tools.compile``: its C template computes the grid from kernel arguments
(our grids need N, which no kernel takes) and calls ``exit()`` on any CUDA error — not something a
TensorRT plugin may do inside someone else's process.  Compilation itself is Triton's own.

The native plan is the kernels' split reduction over dense NCHW rows, one row per program
(``BLOCK_C = 1``) and ``TILE`` elements per tile, for every row length: ``_partial_stats_kernel``
per dtype, ``_combine_stats_kernel`` for a few tile-count blocks, ``_apply_kernel`` per dtype and
epilogue.  The partial and apply kernels exist twice: a general image (runtime element stride, no
alignment assumed: scalar loads), and an *aligned* image compiled with the unit stride as a constexpr
and Triton's ``tt.divisibility = 16`` on the tensor pointers and on ``HW``, ``s_n`` and ``s_c``, so
that it loads and stores 16 bytes at a time.  The launcher takes the aligned image when x, skip and
out are 16-byte aligned and ``HW`` is a multiple of 16 (the 256², 720p and 1080p trunks are), the
general one otherwise.  The constants the C side needs are written into the header, so Python stays
their single source.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

TILE = 4096  # elements per program (row tile); a row may have up to MAX_TILES tiles
MAX_TILES = 1024
TILE_WARPS = 8
COMBINE_BLOCKS = (16, 128, 1024)  # BLOCK_T specializations of the merge kernel
COMBINE_ELEMENTS = 2048  # BLOCK_R × BLOCK_T per merge program, as stats() in instance_norm_triton
COMBINE_WARPS = 4
DEFAULT_ARCHS = (75, 80, 90)
DTYPES = {"fp32": 0, "fp16": 1}  # values of cs_dtype
EPILOGUES = ((0, 0), (1, 0), (0, 1), (1, 1))  # (act, has_skip): act 0 none, 1 relu


@dataclass(frozen=True)
class Variant:
    """One specialization of one kernel: its argument types, constexprs and launch width."""

    role: str  # "partial" | "combine" | "apply" — the C side picks images by role and the fields below
    kernel: str  # the @triton.jit function in instance_norm_triton
    signature: dict[str, str]
    constexprs: dict[str, int]
    num_warps: int
    dtype: int = -1
    act: int = 0
    has_skip: int = 0
    block_t: int = 0
    block_r: int = 0
    aligned: int = 0  # 1: compiled with ALIGNED_HINTS divisible by 16 and s_hw == 1 (vector loads)
    hints: tuple[str, ...] = ()  # arguments compiled with tt.divisibility = 16

    @property
    def param_bytes(self) -> list[int]:
        """Size of each kernel parameter as the compiled kernel takes them: the signature's arguments
        (pointers 8, i32/fp32 4, i64 8), then Triton's two scratch pointers."""
        sizes = {"i32": 4, "fp32": 4, "i64": 8}
        return [8 if t.startswith("*") else sizes[t] for t in self.signature.values()] + [8, 8]


ALIGNED_HINTS = ("HW", "s_n", "s_c")  # plus every tensor pointer of x's dtype


def _row_args(aligned: bool = False) -> dict[str, str]:
    args = {"C": "i32", "HW": "i32", "s_n": "i64", "s_c": "i32", "s_hw": "i32", "n_cblocks": "i32"}
    if aligned:
        del args["s_hw"]  # a constexpr 1: the compiler knows the row is contiguous
    return args


def _aligned(variant: Variant) -> Variant:
    """The same kernel for 16-byte aligned tensors whose rows are contiguous and a multiple of 16 long."""
    pointers = tuple(name for name, t in variant.signature.items() if t == variant.signature["x_ptr"])
    signature = {k: v for k, v in variant.signature.items() if k != "s_hw"}
    return dataclasses.replace(
        variant, signature=signature, constexprs={**variant.constexprs, "s_hw": 1}, aligned=1,
        hints=pointers + ALIGNED_HINTS,
    )  # fmt: skip


def variants() -> list[Variant]:
    """Every image the native plan launches (per architecture)."""
    out: list[Variant] = []
    for dtype, code in DTYPES.items():
        ptr = f"*{dtype}"
        out.append(
            Variant(
                "partial",
                "_partial_stats_kernel",
                {
                    "x_ptr": ptr,
                    "count_ptr": "*fp32",
                    "mean_ptr": "*fp32",
                    "m2_ptr": "*fp32",
                    **_row_args(),
                    "n_tiles": "i32",
                },
                {"BLOCK_C": 1, "BLOCK_HW": TILE},
                TILE_WARPS,
                dtype=code,
            )
        )
        for act, has_skip in EPILOGUES:
            out.append(
                Variant(
                    "apply",
                    "_apply_kernel",
                    {
                        "x_ptr": ptr,
                        "skip_ptr": ptr,
                        "out_ptr": ptr,
                        "mean_ptr": "*fp32",
                        "rstd_ptr": "*fp32",
                        **_row_args(),
                    },
                    {"ACT": act, "HAS_SKIP": has_skip, "BLOCK_C": 1, "BLOCK_HW": TILE},
                    TILE_WARPS,
                    dtype=code,
                    act=act,
                    has_skip=has_skip,
                )
            )
    out += [_aligned(v) for v in out if v.role in ("partial", "apply")]
    for block_t in COMBINE_BLOCKS:
        block_r = max(1, min(64, COMBINE_ELEMENTS // block_t))
        out.append(
            Variant(
                "combine",
                "_combine_stats_kernel",
                {
                    "count_ptr": "*fp32",
                    "tmean_ptr": "*fp32",
                    "m2_ptr": "*fp32",
                    "mean_ptr": "*fp32",
                    "rstd_ptr": "*fp32",
                    "R": "i32",
                    "n_tiles": "i32",
                    "eps": "fp32",
                },
                {"BLOCK_R": block_r, "BLOCK_T": block_t},
                COMBINE_WARPS,
                block_t=block_t,
                block_r=block_r,
            )
        )
    return out


@dataclass(frozen=True)
class Image:
    """A compiled variant: cubin (``sm`` > 0) or PTX text, and what the launch needs."""

    variant: Variant
    sm: int
    is_ptx: bool
    symbol: str
    data: bytes
    shared: int


def _kernels() -> object:
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        raise SystemExit("cyclestream.kernels.aot: unset TRITON_INTERPRET (the interpreter cannot compile)")
    from cyclestream.kernels import instance_norm_triton

    return instance_norm_triton


def compile_variant(variant: Variant, sm: int, *, ptx: bool = False) -> Image:
    """``triton.compile`` for ``cuda:sm``; the cubin, or the PTX when ``ptx``."""
    import triton
    from triton.backends.compiler import GPUTarget

    fn = getattr(_kernels(), variant.kernel)
    signature = {name: variant.signature.get(name, "constexpr") for name in fn.arg_names}
    missing = set(fn.arg_names) - set(variant.signature) - set(variant.constexprs)
    if missing:
        raise ValueError(f"{variant.kernel}: no type or value for {sorted(missing)}")
    target = GPUTarget("cuda", sm, 32)
    backend = triton.compiler.make_backend(target)
    options = backend.parse_options({"num_warps": variant.num_warps, "num_stages": 1})
    attrs = {(fn.arg_names.index(name),): [["tt.divisibility", 16]] for name in variant.hints}
    source = triton.compiler.ASTSource(fn=fn, signature=signature, constexprs=dict(variant.constexprs), attrs=attrs)
    compiled = triton.compile(source, target=target, options=options.__dict__)
    meta = compiled.metadata
    if getattr(meta, "global_scratch_size", 0) or getattr(meta, "profile_scratch_size", 0):
        raise RuntimeError(f"{variant.kernel} needs Triton scratch memory, which the native launcher does not give")
    if meta.shared > 48 * 1024:
        raise RuntimeError(f"{variant.kernel} needs {meta.shared} B of shared memory (the launcher allows 48 KiB)")
    data = compiled.asm["ptx"].encode() + b"\0" if ptx else compiled.asm["cubin"]
    return Image(variant, sm, ptx, meta.name, data, meta.shared)


# ----------------------------------------------------------------------------------------------------
# C output


HEADER = """\
/* Generated by `python -m cyclestream.kernels.aot` (Triton {triton}); do not edit. */
#ifndef CS_KERNEL_IMAGES_H
#define CS_KERNEL_IMAGES_H
#include <stddef.h>

#define CS_TILE {tile}
#define CS_MAX_TILES {max_tiles}
#define CS_ROLE_PARTIAL 0
#define CS_ROLE_COMBINE 1
#define CS_ROLE_APPLY 2

typedef struct {{
  int role;           /* CS_ROLE_* */
  int dtype;          /* cs_dtype of x/skip/out; -1 for the merge kernel */
  int act;            /* apply: 0 none, 1 relu */
  int has_skip;       /* apply: 1 adds skip */
  int aligned;        /* partial/apply: 1 needs 16-byte aligned tensors, HW % 16 == 0; no s_hw argument */
  int block_t;        /* merge: tiles per row it merges (power of two) */
  int block_r;        /* merge: rows per program */
  int sm;             /* compute capability ×10 + minor, e.g. 80 */
  int is_ptx;         /* 1: NUL-terminated PTX text for the driver's JIT, 0: cubin for `sm` */
  int num_warps;
  int shared;         /* bytes of dynamic shared memory */
  int n_args;         /* kernel parameters, Triton's two scratch pointers included */
  const char *symbol; /* entry point in the image */
  const unsigned char *data;
  size_t size;
}} cs_kernel_image;

extern const cs_kernel_image *const cs_kernel_images[];
extern const size_t cs_kernel_image_count;

#endif
"""

ROLES = {"partial": 0, "combine": 1, "apply": 2}


def _c_bytes(data: bytes) -> str:
    rows = (", ".join(f"0x{b:02x}" for b in data[i : i + 24]) for i in range(0, len(data), 24))
    return ",\n  ".join(rows)


def _c_arch_source(images: Sequence[Image], tag: str) -> str:
    parts = ["/* Generated by `python -m cyclestream.kernels.aot`; do not edit. */", '#include "cs_kernel_images.h"']
    for i, img in enumerate(images):
        v = img.variant
        name = f"cs_{tag}_{i}"
        parts.append(f"static const unsigned char {name}_data[{len(img.data)}] = {{\n  {_c_bytes(img.data)}\n}};")
        parts.append(
            f"const cs_kernel_image {name} = {{{ROLES[v.role]}, {v.dtype}, {v.act}, {v.has_skip}, {v.aligned}, "
            f"{v.block_t}, {v.block_r}, {img.sm}, {int(img.is_ptx)}, {v.num_warps}, {img.shared}, "
            f'{len(v.param_bytes)}, "{img.symbol}", {name}_data, sizeof({name}_data)}};'
        )
    return "\n".join(parts) + "\n"


def write_sources(images_by_tag: dict[str, list[Image]], out: Path) -> list[Path]:
    """``cs_kernel_images.h``, one ``cs_kernel_images_<tag>.c`` per tag, and the table in ``..._table.c``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        triton_version = version("triton")
    except PackageNotFoundError:
        triton_version = "not installed"
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "cs_kernel_images.h"]
    written[0].write_text(HEADER.format(triton=triton_version, tile=TILE, max_tiles=MAX_TILES))
    names: list[str] = []
    for tag, images in images_by_tag.items():
        path = out / f"cs_kernel_images_{tag}.c"
        path.write_text(_c_arch_source(images, tag))
        written.append(path)
        raw = out / "images" / tag  # the same images as files, for cuobjdump / nvdisasm
        raw.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(images):
            role = img.variant.role + ("_aligned" if img.variant.aligned else "")
            name = f"{i:02d}_{role}.{'ptx' if img.is_ptx else 'cubin'}"
            (raw / name).write_bytes(img.data[:-1] if img.is_ptx else img.data)  # PTX without its NUL
        names += [f"cs_{tag}_{i}" for i in range(len(images))]
    table = ['#include "cs_kernel_images.h"', ""]
    table += [f"extern const cs_kernel_image {n};" for n in names]
    table += ["", "const cs_kernel_image *const cs_kernel_images[] = {", *(f"  &{n}," for n in names), "};"]
    table += [f"const size_t cs_kernel_image_count = {len(names)};", ""]
    written.append(out / "cs_kernel_images_table.c")
    written[-1].write_text("\n".join(table))
    return written


def build(out: Path, archs: Sequence[int], ptx_arch: int | None, *, progress: bool = True) -> list[Path]:
    """Compile every variant for every arch (and the PTX) and write the C sources into ``out``."""
    from tqdm import tqdm

    jobs = [(f"sm{sm}", sm, False) for sm in archs]
    if ptx_arch:
        jobs.append((f"ptx{ptx_arch}", ptx_arch, True))
    todo = [(tag, sm, ptx, v) for tag, sm, ptx in jobs for v in variants()]
    images: dict[str, list[Image]] = {tag: [] for tag, _, _ in jobs}
    for tag, sm, ptx, variant in tqdm(todo, desc="Triton AOT", unit="kernel", disable=not progress):
        images[tag].append(compile_variant(variant, sm, ptx=ptx))
    return write_sources(images, out)


def _archs(text: str) -> list[int]:
    archs = sorted({int(a) for a in text.replace(";", ",").split(",") if a.strip()})
    if not archs or any(a < 75 for a in archs):
        raise argparse.ArgumentTypeError(f"architectures are compute capabilities ≥ 75 like 80,90; got {text!r}")
    return archs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cyclestream.kernels.aot", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the generated C sources")
    parser.add_argument("--archs", type=_archs, default=list(DEFAULT_ARCHS), help="e.g. 75,80,90")
    parser.add_argument("--no-ptx", action="store_true", help="cubins only (no JIT fallback for newer GPUs)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # what the JIT path does today, without the warning
    os.environ.setdefault("TRITON_DISABLE_LINE_INFO", "1")  # no debug sections in shipped images
    written = build(args.out, args.archs, None if args.no_ptx else args.archs[0], progress=not args.quiet)
    if not args.quiet:
        print(f"wrote {len(written)} files to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
