"""A model file checked before any loader reads it.

Loaders trust sizes written inside the file: PyTorch's zip reader allocates what a member's header
declares before it decompresses a byte, its legacy loader allocates each storage the pickle names,
and a generator is built from the architecture a safetensors header describes.  So before
``torch.load`` or ``safe_open`` runs, the file is opened only if it is a regular file (a FIFO would
block the open, a device could be read without end), no larger than ``MAX_MODEL_BYTES``, and every
size it declares is checked against the bytes it really holds:

* a PyTorch zip: each member within the file, stored members exactly their stored size (PyTorch never
  compresses), a compressed member at most ``MAX_EXPANSION`` times its compressed size, all members
  together at most ``MAX_EXPANSION`` times the file;
* a legacy PyTorch pickle: the pickles read with every class replaced by an inert stand-in (nothing
  is imported or run), then each storage they declare found, with its declared size, in the file;
* safetensors: the header's length, and every tensor's data offsets inside the file with
  dtype × shape equal to its byte length.

Every refusal is one line naming the user's path.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import pickle
import stat
import struct
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from cyclestream.engine.errors import CheckpointError, first_line

MAX_MODEL_BYTES = 1 << 30  # the largest official generator (unet_256) is 218 MB
MAX_EXPANSION = 4  # a compressed member may hold this many times its size (weights deflate to ~90%)
MAX_PICKLE_BYTES = 16 << 20  # the pickled structure of a state dict (not its weights): ~100 bytes a tensor
MAX_SAFETENSORS_HEADER = 16 << 20
MAX_TENSORS = 4096  # a resnet_9blocks holds ~70
MAX_ZIP_MEMBERS = 2 * MAX_TENSORS + 16  # one per storage, plus data.pkl, version and the like

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER
LEGACY_PROTOCOL = 1001

# Bytes per element of the storage classes torch.save names in a legacy file (torch.FloatStorage, ...).
LEGACY_STORAGE_ITEMSIZE = {
    "UntypedStorage": 1, "ByteStorage": 1, "CharStorage": 1, "BoolStorage": 1, "QUInt8Storage": 1,
    "QInt8Storage": 1, "QUInt4x2Storage": 1, "QUInt2x4Storage": 1,
    "ShortStorage": 2, "HalfStorage": 2, "BFloat16Storage": 2,
    "IntStorage": 4, "FloatStorage": 4, "QInt32Storage": 4,
    "LongStorage": 8, "DoubleStorage": 8, "ComplexFloatStorage": 8, "ComplexDoubleStorage": 16,
}  # fmt: skip
SAFETENSORS_ITEMSIZE = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}  # fmt: skip


@dataclass
class ModelFile:
    """An open model file that passed the checks; ``kind`` is "torch" or "safetensors"."""

    path: Path
    file: BinaryIO
    size: int
    kind: str
    tensors: dict[str, tuple[int, ...]] = field(default_factory=dict)  # safetensors: name → shape
    metadata: dict[str, str] = field(default_factory=dict)  # safetensors: the header's __metadata__


def _size_text(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def regular_file_stat(path: Path) -> os.stat_result:
    """``os.stat`` of a model path that may be opened: it exists and is a regular file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CheckpointError(f"model file not found: {path}") from None
    except OSError as e:
        raise CheckpointError(f"cannot read model {path}: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise CheckpointError(f"model path is a folder, not a file: {path}")
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"model path is not a regular file (a pipe, socket or device): {path}")
    return st


def pickled_objects(path: Path) -> CheckpointError:
    return CheckpointError(
        f"{path} holds pickled Python objects, not just weights; refusing to load it "
        "(checkpoints are read with weights_only=True)"
    )


def check_tensor_bytes(model: ModelFile, tensors: int, total: int) -> None:
    """Refuse loaded tensors that claim more bytes than the file could hold: a tensor of zero strides
    views one element as any shape, and a generator would be built, for real, at that shape."""
    if tensors > MAX_TENSORS:
        raise CheckpointError(f"{model.path} holds {tensors} tensors, more than any generator has ({MAX_TENSORS})")
    if total > MAX_EXPANSION * model.size:
        raise CheckpointError(
            f"{model.path}: its tensors claim {_size_text(total)} in a {_size_text(model.size)} file "
            "(views that repeat the same bytes)"
        )


@contextlib.contextmanager
def open_model_file(path: str | os.PathLike[str]) -> Iterator[ModelFile]:
    """Open ``path`` as a model file after the checks of this module; the file is at offset 0."""
    path = Path(path)
    st = regular_file_stat(path)
    if st.st_size > MAX_MODEL_BYTES:
        raise CheckpointError(
            f"{path} is {_size_text(st.st_size)}, larger than any generator "
            f"(the limit is {_size_text(MAX_MODEL_BYTES)})"
        )
    nonblocking = getattr(os, "O_NONBLOCK", 0)  # should the path have become a FIFO since the stat: no waiting
    try:
        fd = os.open(path, os.O_RDONLY | nonblocking | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise CheckpointError(f"cannot read model {path}: {e.strerror or e}") from None
    with os.fdopen(fd, "rb") as f:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            raise CheckpointError(f"model path changed while it was opened: {path}")
        if nonblocking:
            os.set_blocking(fd, True)
        model = ModelFile(path, f, now.st_size, "")
        try:
            _check(model)
        except OSError as e:
            raise CheckpointError(f"cannot read model {path}: {e.strerror or e}") from None
        f.seek(0)
        yield model


def _check(model: ModelFile) -> None:
    head = model.file.read(16)
    model.file.seek(0)
    if len(head) >= 9 and head[8:9] == b"{":
        model.kind = "safetensors"
        _check_safetensors(model)
    elif head[:4] == b"PK\x03\x04":
        model.kind = "torch"
        _check_zip(model)
    elif head[:1] == b"\x80":
        model.kind = "torch"
        _check_legacy(model)
    else:
        raise CheckpointError(f"{model.path} is not a model file (neither a PyTorch .pth nor a safetensors file)")


# ----------------------------------------------------------------------------- safetensors


def _check_safetensors(model: ModelFile) -> None:
    path, f = model.path, model.file
    (header_len,) = struct.unpack("<Q", f.read(8))
    if header_len > MAX_SAFETENSORS_HEADER or 8 + header_len > model.size:
        raise CheckpointError(
            f"{path} is not a readable safetensors file (its header declares {_size_text(header_len)}; "
            f"the file has {_size_text(model.size)})"
        )
    try:
        header = json.loads(f.read(header_len))
    except (ValueError, RecursionError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file (damaged header: {first_line(e)})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} is not a readable safetensors file (its header is not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"{path} is not a readable safetensors file (its metadata is not text)")
    if len(header) > MAX_TENSORS:
        raise CheckpointError(f"{path} declares {len(header)} tensors, more than any generator has ({MAX_TENSORS})")
    data_bytes = model.size - 8 - header_len
    total = 0
    for name, info in header.items():
        model.tensors[name], length = _tensor_entry(path, name, info, data_bytes)
        total += length
    if total > data_bytes:  # tensors that overlap would each be copied out of the same bytes
        raise CheckpointError(
            f"{path} is not a readable safetensors file (its tensors declare {_size_text(total)} "
            f"in {_size_text(data_bytes)} of data)"
        )
    model.metadata = metadata


def _tensor_entry(path: Path, name: str, info: Any, data_bytes: int) -> tuple[tuple[int, ...], int]:
    """The shape and byte length of one safetensors header entry whose bytes lie inside the file and match
    its dtype × shape."""

    def refuse(why: str) -> CheckpointError:
        return CheckpointError(f"{path} is not a readable safetensors file (tensor {name!r} {why})")

    if not isinstance(info, dict):
        raise refuse("is not described by a JSON object")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in SAFETENSORS_ITEMSIZE:
        raise refuse(f"has an unknown dtype {dtype!r}")
    ints = (isinstance(shape, list) and isinstance(offsets, list) and len(offsets) == 2
            and all(type(v) is int and v >= 0 for v in [*shape, *offsets]))  # fmt: skip
    if not ints:
        raise refuse("has no valid shape and data offsets")
    begin, end = offsets
    if not begin <= end <= data_bytes:
        raise refuse(f"lies at bytes {begin}..{end}, beyond the {_size_text(data_bytes)} of data the file holds")
    declared = math.prod(shape) * SAFETENSORS_ITEMSIZE[dtype]
    if declared != end - begin:
        raise refuse(f"declares {dtype} {shape} ({_size_text(declared)}) in {_size_text(end - begin)}")
    return tuple(shape), declared


# ----------------------------------------------------------------------------- PyTorch zip archives


def _zip_directory(f: BinaryIO, size: int) -> tuple[int, int] | None:
    """(members, central directory bytes) as the end-of-central-directory record declares them (ZIP64
    too), read before ``zipfile`` reads the directory and builds one object per member; None when no
    such record is found."""
    tail_len = min(size, 22 + 0xFFFF)  # the record, after which a comment of up to 64 KiB may follow
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        return None
    count, directory = struct.unpack_from("<HI", tail, at + 10)
    locator = at - 20
    if count == 0xFFFF or directory == 0xFFFFFFFF:
        if locator >= 0 and tail[locator : locator + 4] == b"PK\x06\x07":
            (record,) = struct.unpack_from("<Q", tail, locator + 8)
            if record + 56 <= size:
                f.seek(record)
                zip64 = f.read(56)
                if zip64[:4] == b"PK\x06\x06":
                    count, directory = struct.unpack_from("<QQ", zip64, 32)
    return count, directory


def _check_zip(model: ModelFile) -> None:
    path, f, size = model.path, model.file, model.size

    def refuse(why: str) -> CheckpointError:
        return CheckpointError(f"{path} is not a readable PyTorch checkpoint ({why})")

    directory = _zip_directory(f, size)
    if directory is not None and directory[0] > MAX_ZIP_MEMBERS:
        raise refuse(f"its zip archive declares {directory[0]} members, more than a generator has")
    if directory is not None and directory[1] > size:
        raise refuse(f"its zip directory declares {_size_text(directory[1])} in a {_size_text(size)} file")
    f.seek(0)
    try:
        members = zipfile.ZipFile(f).infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, NotImplementedError, MemoryError) as e:
        raise refuse(f"damaged zip archive: {first_line(e)}") from None
    if len(members) > MAX_ZIP_MEMBERS:
        raise refuse(f"its zip archive holds {len(members)} members, more than a generator has")
    total = 0
    for m in members:
        held, declared = m.compress_size, m.file_size
        if m.header_offset + held > size:
            raise refuse(f"member {m.filename!r} lies beyond the end of the file")
        if m.compress_type == zipfile.ZIP_STORED and declared != held:
            raise refuse(f"member {m.filename!r} declares {_size_text(declared)} but stores {_size_text(held)}")
        if declared > MAX_EXPANSION * held and declared > 1 << 20:
            raise refuse(
                f"member {m.filename!r} declares {_size_text(declared)} compressed into {_size_text(held)}; "
                "PyTorch stores weights uncompressed"
            )
        if m.filename.endswith("data.pkl") and declared > MAX_PICKLE_BYTES:
            raise refuse(f"member {m.filename!r} declares a {_size_text(declared)} pickle")
        total += declared
    if total > min(MAX_MODEL_BYTES, MAX_EXPANSION * size):
        raise refuse(f"its members declare {_size_text(total)} in a {_size_text(size)} file")


# ----------------------------------------------------------------------------- legacy PyTorch pickles


class _Inert:
    """What every class and function in a pickle becomes while its sizes are read: it accepts any
    arguments and state and does nothing."""

    qualname = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> _Inert:
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> _Inert:
        return _Inert()

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass


class _SizeReader(pickle.Unpickler):
    """Unpickles with no real class or function reachable, recording the storages named in persistent IDs."""

    def __init__(self, file: Any) -> None:
        super().__init__(file, encoding="utf-8")
        self.storages: dict[str, tuple[str, int]] = {}  # key → (storage class name, element count)
        self.globals: set[str] = set()

    def find_class(self, module: str, name: str) -> Any:
        self.globals.add(f"{module}.{name}")
        return type(name, (_Inert,), {"qualname": f"{module}.{name}"})

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
            storage_type, key, numel = pid[1], pid[2], pid[4]
            name = getattr(storage_type, "qualname", "")
            if not isinstance(key, str) or type(numel) is not int or numel < 0:
                raise pickle.UnpicklingError("a storage with an invalid key or size")
            self.storages.setdefault(key, (name, numel))
        return _Inert()


class _Window(io.RawIOBase):
    """The first ``limit`` bytes of a file, read where the file is: reads never reach past them, so a
    pickle declaring a huge string gets a short read, not a huge buffer."""

    def __init__(self, f: BinaryIO, limit: int) -> None:
        self._f, self._limit = f, limit
        self.exhausted = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        room = self._limit - self._f.tell()
        want = min(len(buffer), max(room, 0))
        if want < len(buffer):
            self.exhausted = True
        data = self._f.read(want)
        buffer[: len(data)] = data
        return len(data)


def _looks_like_tar(f: BinaryIO) -> bool:
    """Whether the file starts with a valid tar header (torch.load tries its tar loader first, which extracts
    members to disk)."""
    f.seek(0)
    try:
        tarfile.TarInfo.frombuf(f.read(512), "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def _check_legacy(model: ModelFile) -> None:
    path, f, size = model.path, model.file, model.size

    def refuse(why: str) -> CheckpointError:
        return CheckpointError(f"{path} is not a readable PyTorch checkpoint ({why})")

    if _looks_like_tar(f):
        raise refuse("a tar archive: the pre-1.0 tar format is not read")
    f.seek(0)
    window = _Window(f, min(size, MAX_PICKLE_BYTES))
    reader = _SizeReader(window)  # unbuffered: after the last pickle the file is where its storages start
    try:
        if reader.load() != LEGACY_MAGIC:  # a plain pickle, not torch.save's
            if reader.globals:
                raise pickled_objects(path)
            raise refuse("no PyTorch magic number")
        if reader.load() != LEGACY_PROTOCOL:
            raise refuse("an unknown legacy protocol version")
        sys_info = reader.load()
        reader.load()  # the object itself; its storages are recorded on the way
        keys = reader.load()
    except CheckpointError:
        raise
    except Exception as e:  # the stand-ins make any pickle error an ordinary exception
        if window.exhausted and size > MAX_PICKLE_BYTES:
            raise refuse(f"its pickled structure is larger than {_size_text(MAX_PICKLE_BYTES)}") from None
        raise refuse(f"damaged pickle: {first_line(e)}") from None
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise refuse("damaged pickle: no list of storages")
    order = "<q" if not isinstance(sys_info, dict) or sys_info.get("little_endian", True) else ">q"
    at = f.tell()
    for key in keys:
        if key not in reader.storages:
            raise refuse(f"storage {key!r} is listed but not used")
        storage_class, numel = reader.storages[key]
        module, _, name = storage_class.rpartition(".")
        itemsize = LEGACY_STORAGE_ITEMSIZE.get(name) if module == "torch" else None
        if itemsize is None:
            raise refuse(f"storage {key!r} has an unknown type {storage_class!r}")
        f.seek(at)
        count = f.read(8)
        if len(count) < 8 or struct.unpack(order, count)[0] != numel:
            raise refuse(f"storage {key!r} declares {numel} elements that the file does not hold")
        at += 8 + numel * itemsize
        if at > size:
            raise refuse(f"storage {key!r} declares {_size_text(numel * itemsize)}, beyond the end of the file")
