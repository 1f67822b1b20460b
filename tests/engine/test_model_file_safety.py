"""Hostile model files, made by hand the way an attacker would: every size they declare is checked
against the file before a loader allocates or decompresses anything, and only regular files are opened."""

from __future__ import annotations

import collections
import io
import json
import os
import pickle
import socket
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import pytest
import torch

from cyclestream.engine import checkpoint
from cyclestream.engine.checkpoint import load_model, read_metadata
from cyclestream.engine.errors import CheckpointError
from cyclestream.engine.models import GeneratorSpec, build_generator

GiB = 1 << 30
SPEC = GeneratorSpec(ngf=4, n_blocks=1)


@pytest.fixture
def no_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if torch.load or safe_open is reached: the refusal must come before them."""

    def reached(*args: object, **kwargs: object) -> None:
        pytest.fail("the loader was called on a file that declares more than it holds")

    monkeypatch.setattr(torch, "load", reached)
    monkeypatch.setattr(checkpoint, "safe_open", reached)


def refused(path: Path, match: str) -> str:
    with pytest.raises(CheckpointError, match=match) as err:
        load_model(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    return message


# ----------------------------------------------------------------------------- zip archives (torch.save)


def _zip(members: list[tuple[str, int, bytes, int, int]]) -> bytes:
    """A zip archive written with struct: (name, method, stored bytes, declared size, CRC-32) per member."""
    out, directory = io.BytesIO(), io.BytesIO()
    for name, method, data, size, crc in members:
        offset, raw = out.tell(), name.encode()
        out.write(struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, method, 0, 0, crc, len(data), size, len(raw), 0))
        out.write(raw + data)
        directory.write(struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, method, 0, 0, crc, len(data), size,
                                    len(raw), 0, 0, 0, 0, 0, offset) + raw)  # fmt: skip
    start, cd = out.tell(), directory.getvalue()
    out.write(cd + struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, len(members), len(members), len(cd), start, 0))
    return out.getvalue()


def _torch_members(tmp_path: Path) -> list[tuple[str, int, bytes, int, int]]:
    """The members of a real torch.save of a small generator, each as stored."""
    real = tmp_path / "real.pth"
    torch.save(build_generator(SPEC).state_dict(), real)
    with zipfile.ZipFile(real) as z:
        return [(i.filename, zipfile.ZIP_STORED, z.read(i), i.file_size, i.CRC) for i in z.infolist()]


def _deflated_zeros(size: int) -> tuple[bytes, int]:
    """A raw deflate stream of ``size`` zero bytes (a 1 MiB block repeated: each ends in a full flush, so the
    blocks are independent) and its CRC-32."""
    block = bytes(1 << 20)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    one = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(size >> 20):
        crc = zlib.crc32(block, crc)
    return one * (size >> 20) + deflate.flush(), crc


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reported file: a torch.save archive (~2 MB on disk) whose weights member inflates to 2 GiB of zeros."""
    folder = tmp_path_factory.mktemp("bomb")
    stream, crc = _deflated_zeros(2 * GiB)
    members = [
        (name, zipfile.ZIP_DEFLATED, stream, 2 * GiB, crc) if name.endswith("/data/0") else (name, *rest)
        for name, *rest in _torch_members(folder)
    ]
    bomb = folder / "latest_net_G.pth"
    bomb.write_bytes(_zip(members))
    return bomb


def test_zip_member_of_2gib_zeros_is_refused_before_torch_load(zip_bomb: Path, no_loader: None) -> None:
    assert zip_bomb.stat().st_size < 4 << 20
    with zipfile.ZipFile(zip_bomb) as z:  # a valid archive: zipfile itself reads the sizes as written
        assert max(i.file_size for i in z.infolist()) == 2 * GiB
    refused(zip_bomb, "declares 2.0 GiB compressed into")


def test_zip_member_whose_size_field_is_forged_is_refused(tmp_path: Path, no_loader: None) -> None:
    members = [
        (name, method, data, 2 * GiB if name.endswith("/data/0") else size, crc)
        for name, method, data, size, crc in _torch_members(tmp_path)
    ]
    forged = tmp_path / "forged.pth"
    forged.write_bytes(_zip(members))
    refused(forged, "declares 2.0 GiB but stores")


@pytest.mark.slow
def test_refusing_the_zip_bomb_stays_within_bounded_memory(zip_bomb: Path) -> None:
    """Measured in a fresh process: the refusal costs what importing torch costs, not the 2 GiB declared.
    (The process's own high-water mark, VmHWM: ru_maxrss keeps the forking parent's, the test runner's.)"""
    code = (
        "import sys\n"
        "from cyclestream.engine.checkpoint import load_model\n"
        "try:\n    load_model(sys.argv[1])\nexcept Exception as e:\n    print(type(e).__name__)\n"
        "hwm = next(line for line in open('/proc/self/status') if line.startswith('VmHWM:'))\n"
        "print(int(hwm.split()[1]) // 1024)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(zip_bomb)], capture_output=True, text=True, timeout=120)
    error, peak_mib = done.stdout.split()
    assert error == "CheckpointError"
    assert int(peak_mib) < 500, f"peak memory {peak_mib} MiB"


# ----------------------------------------------------------------------------- legacy pickles


class _Storage:
    """Stands for a storage in the pickle being written; becomes a persistent ID."""


class _Tensor:
    def __init__(self, numel: int) -> None:
        self.numel = numel

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        args = (_Storage(), 0, (self.numel,), (1,), False, collections.OrderedDict())
        return (torch._utils._rebuild_tensor_v2, args)


def _legacy_file(declared: int, held: int) -> bytes:
    """torch.save's legacy layout written with pickle: magic number, protocol, system info, the state dict
    (whose one tensor's storage declares ``declared`` floats), the storage keys, then ``held`` floats."""

    class Writer(pickle.Pickler):
        def persistent_id(self, obj: object) -> object:
            return ("storage", torch.FloatStorage, "0", "cpu", declared, None) if isinstance(obj, _Storage) else None

    out = io.BytesIO()
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    for header in (0x1950A86A20F9469CFC6C, 1001, sys_info):
        pickle.dump(header, out, protocol=2)
    Writer(out, protocol=2).dump({"model.1.weight": _Tensor(declared)})
    pickle.dump(["0"], out, protocol=2)
    out.write(struct.pack("<q", declared) + bytes(4 * held))
    return out.getvalue()


def test_legacy_pickle_declaring_a_2gib_storage_is_refused_before_torch_load(tmp_path: Path, no_loader: None) -> None:
    bomb = tmp_path / "old_net_G.pth"
    bomb.write_bytes(_legacy_file(declared=GiB // 2, held=1024))
    refused(bomb, "storage '0' declares 2.0 GiB, beyond the end of the file")


def test_legacy_files_torch_writes_still_load(tmp_path: Path) -> None:
    state = build_generator(SPEC).state_dict()
    path = tmp_path / "legacy.pth"
    torch.save(state, path, _use_new_zipfile_serialization=False)
    loaded = load_model(path)
    assert loaded.spec == SPEC
    assert all(torch.equal(loaded.generator.state_dict()[k], v) for k, v in state.items())


def test_pickle_that_runs_out_before_its_storages_is_refused(tmp_path: Path, no_loader: None) -> None:
    path = tmp_path / "cut.pth"
    path.write_bytes(_legacy_file(declared=16, held=16)[:-32])
    refused(path, "storage '0' declares 64 bytes, beyond the end of the file")


# ----------------------------------------------------------------------------- safetensors headers


def _safetensors(path: Path, tensors: dict[str, dict[str, object]], data: bytes, spec: dict | None = None) -> Path:
    """A safetensors file written with json + struct: 8-byte header length, JSON header, data."""
    meta = {"cyclestream": json.dumps({"generator": spec or SPEC.to_dict()})}
    header = json.dumps({"__metadata__": meta, **tensors}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)
    return path


@pytest.mark.parametrize(
    ("tensors", "data", "match"),
    [
        ({"model.1.weight": {"dtype": "F32", "shape": [GiB // 2], "data_offsets": [0, 2 * GiB]}}, bytes(64),
         "beyond the 64 bytes of data"),
        ({"model.1.weight": {"dtype": "F32", "shape": [GiB // 2], "data_offsets": [0, 64]}}, bytes(64),
         r"declares F32 \[536870912\] \(2.0 GiB\) in 64 bytes"),
        ({f"model.{i}.weight": {"dtype": "F32", "shape": [16], "data_offsets": [0, 64]} for i in range(3)}, bytes(64),
         "tensors declare 192 bytes in 64 bytes"),
        ({"model.1.weight": {"dtype": "F99", "shape": [16], "data_offsets": [0, 64]}}, bytes(64), "unknown dtype"),
        ({"model.1.weight": {"dtype": "F32", "shape": [-16], "data_offsets": [0, 64]}}, bytes(64), "no valid shape"),
    ],
    ids=["beyond-the-end", "shape-larger-than-bytes", "overlapping", "unknown-dtype", "negative-shape"],
)  # fmt: skip
def test_safetensors_header_declaring_more_than_the_file_is_refused(
    tmp_path: Path, no_loader: None, tensors: dict, data: bytes, match: str
) -> None:
    refused(_safetensors(tmp_path / "g.safetensors", tensors, data), match)


def test_safetensors_header_length_beyond_the_file_is_refused(tmp_path: Path, no_loader: None) -> None:
    path = tmp_path / "g.safetensors"
    path.write_bytes(struct.pack("<Q", 99_000_000) + b'{"a": 1}')
    refused(path, "its header declares 94.4 MiB; the file has 16 bytes")


@pytest.fixture
def no_real_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a generator is built anywhere but on the meta device (where nothing is allocated)."""
    real_build = checkpoint.build_generator

    def build(spec: GeneratorSpec) -> torch.nn.Module:
        if torch.get_default_device().type != "meta":
            pytest.fail(f"a {spec} generator was allocated before its weights were checked")
        return real_build(spec)

    monkeypatch.setattr(checkpoint, "build_generator", build)


def test_metadata_declaring_a_huge_generator_builds_nothing_for_real(tmp_path: Path, no_real_generator: None) -> None:
    """A header may describe a generator of any size; it is compared with the tensors on the meta device."""
    huge = {**SPEC.to_dict(), "ngf": 4096, "n_blocks": 2}
    weight = {"model.1.weight": {"dtype": "F32", "shape": [4, 3, 7, 7], "data_offsets": [0, 4 * 3 * 7 * 7 * 4]}}
    path = _safetensors(tmp_path / "huge.safetensors", weight, bytes(4 * 3 * 7 * 7 * 4), huge)
    refused(path, "declares 2 blocks for 1 tensors|weights do not fit")
    weights = {f"model.{i}.weight": weight["model.1.weight"] for i in range(4)}
    path = _safetensors(tmp_path / "huge.safetensors", weights, bytes(4 * 3 * 7 * 7 * 4), huge)
    with pytest.raises(CheckpointError, match=r"tensors declare|weights do not fit"):
        load_model(path)


def test_zero_stride_views_cannot_stand_for_a_large_generator(tmp_path: Path, no_real_generator: None) -> None:
    """Every weight of a resnet_9blocks with ngf=256 (730 MB) as a zero-stride view of one float: the file is a
    few KiB, the generator its shapes describe is not built."""
    big = GeneratorSpec(ngf=256, n_blocks=9)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in build_generator(big).state_dict().items()}
    views = tmp_path / "views.pth"
    torch.save({k: torch.zeros(()).expand(shape) for k, shape in shapes.items()}, views)
    assert views.stat().st_size < 1 << 20
    refused(views, "its tensors claim .* GiB|MiB in a .* file")


def test_read_metadata_is_checked_too(tmp_path: Path, no_loader: None) -> None:
    path = _safetensors(tmp_path / "g.safetensors", {"w": {"dtype": "F32", "shape": [9], "data_offsets": [0, 36]}},
                        bytes(4))  # fmt: skip
    with pytest.raises(CheckpointError, match="beyond the 4 bytes of data"):
        read_metadata(path)


# ----------------------------------------------------------------------------- what is not a regular file


@pytest.mark.slow
def test_fifo_as_model_through_the_cli_exits_at_once_with_one_line(tmp_path: Path, make_clip) -> None:
    clip = make_clip("in.mp4", frames=2)
    fifo = tmp_path / "model.pth"
    os.mkfifo(fifo)
    out = tmp_path / "out.mp4"
    command = [sys.executable, "-m", "cyclestream", "translate", str(clip), str(out), "--model", str(fifo)]
    started = time.monotonic()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail("the command waited on the FIFO instead of refusing it")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert lines == [f"cyclestream: error: model path is not a regular file (a pipe, socket or device): {fifo}"]
    assert not out.exists() and time.monotonic() - started < 60


def test_socket_and_device_are_refused(tmp_path: Path) -> None:
    sock_path = tmp_path / "model.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        refused(sock_path, "not a regular file")
    if os.path.exists("/dev/zero"):
        refused(Path("/dev/zero"), "not a regular file")
