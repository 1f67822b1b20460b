"""The on-disk cache of built artifacts (ONNX graphs, TensorRT engines, OpenVINO's compiled blobs) and
the keys that name them.

The key logic is pure and cheap, so it is tested on any machine.  A TensorRT engine is only valid
for the exact model weights, shape profile, precision, GPU and TensorRT version it was built with;
``EngineKey`` holds all of them and its ``digest`` names the file.  An engine built for a wider
profile (``cyclestream compile --shape 1x3x256x256:8x3x1088x1920``) is found by a later job that
needs any shape inside that profile.

Every entry ``NAME`` has a record ``NAME.json`` beside it: the SHA-256 and size of its bytes and what
it was made from (the model's digest, the libraries' versions, the engine key).  An entry is used only
when its bytes still match its record and it was made from what the caller asks for; one that was
changed, truncated, replaced by something not a regular file or by another user's file, or has no
record, is removed with a warning and made again — never used, never a failure of every later run.
Entries are written whole (temporary file, then rename) and their record after them, under a lock
file (``NAME.lock``) that processes sharing the cache take while they check or make an entry.  The
folders are created readable by their owner only (0700).

Layout: ``$CYCLESTREAM_CACHE_DIR`` or ``$XDG_CACHE_HOME/cyclestream`` or ``~/.cache/cyclestream``, with
``onnx/``, ``engines/`` and ``openvino/`` below it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from cyclestream.engine.atomic import atomic_output
from cyclestream.engine.backends.base import FrameShape
from cyclestream.engine.backends.tensors import padded_size
from cyclestream.engine.checkpoint import LoadedModel
from cyclestream.engine.errors import BackendError, CycleStreamError
from cyclestream.engine.paths import file_sha256

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; entries are still written whole and checked
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("cyclestream")

CACHE_ENV = "CYCLESTREAM_CACHE_DIR"
CACHE_FORMAT = 2  # bump when the way artifacts are built or recorded changes, so old ones are not reused
RECORD_SUFFIX = ".json"
LOCK_SUFFIX = ".lock"
MAX_RECORD_BYTES = 1 << 20

Dims = tuple[int, int, int, int]  # N, C, H, W of the model input (after padding)


def default_cache_dir() -> Path:
    """``$CYCLESTREAM_CACHE_DIR``, else ``$XDG_CACHE_HOME/cyclestream``, else ``~/.cache/cyclestream``."""
    if explicit := os.environ.get(CACHE_ENV):
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cyclestream"


def key_digest(data: dict[str, Any]) -> str:
    """A stable name for a key: SHA-256 of it as canonical JSON (first 32 hex digits)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:32]


def model_digest(model: LoadedModel) -> str:
    """SHA-256 of the generator's architecture and weights (names, dtypes, shapes and bytes)."""
    h = hashlib.sha256(json.dumps(model.spec.to_dict(), sort_keys=True).encode())
    for name, tensor in sorted(model.generator.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        # flattened first: a size-1 last dim (1x1 conv weights) may carry a stride other than 1
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# ----------------------------------------------------------------------------- shape profiles

_DIMS = re.compile(r"^\s*(\d+)x(\d+)x(\d+)x(\d+)\s*$")


def parse_dims(text: str) -> Dims:
    """'1x3x256x256' → (1, 3, 256, 256)."""
    m = _DIMS.match(text.lower())
    if not m:
        raise CycleStreamError(f"expected a shape NxCxHxW such as 1x3x256x256, got {text!r}")
    dims = tuple(int(v) for v in m.groups())
    if min(dims) < 1:
        raise CycleStreamError(f"shape {text!r} has a zero dimension")
    return dims  # type: ignore[return-value]


@dataclass(frozen=True)
class ShapeProfile:
    """min / opt / max input shapes (NCHW) an engine accepts; opt is what it is tuned for."""

    min: Dims
    opt: Dims
    max: Dims

    def __post_init__(self) -> None:
        for i, axis in enumerate("NCHW"):
            if not self.min[i] <= self.opt[i] <= self.max[i]:
                raise CycleStreamError(
                    f"shape profile needs min ≤ opt ≤ max on every axis; {axis} is "
                    f"{self.min[i]}, {self.opt[i]}, {self.max[i]}"
                )
        if not self.min[1] == self.opt[1] == self.max[1]:
            raise CycleStreamError("the channel count cannot vary within a shape profile")

    @classmethod
    def parse(cls, text: str) -> ShapeProfile:
        """``OPT``, ``OPT:MAX`` or ``MIN:OPT:MAX``, each ``NxCxHxW``.

        With OPT alone the engine takes exactly that frame size, batches 1..N (so the last, shorter
        batch of a video fits).  With OPT:MAX it takes batches 1..maxN and sides from OPT's up to MAX's.
        """
        parts = [parse_dims(p) for p in text.split(":")]
        if len(parts) == 1:
            opt = parts[0]
            return cls((1, *opt[1:]), opt, opt)  # type: ignore[arg-type]
        if len(parts) == 2:
            opt, mx = parts
            return cls((1, *opt[1:]), opt, mx)  # type: ignore[arg-type]
        if len(parts) == 3:
            return cls(*parts)
        raise CycleStreamError(f"expected OPT, OPT:MAX or MIN:OPT:MAX shapes, got {text!r}")

    @classmethod
    def for_frames(cls, shape: FrameShape, multiple: int, channels: int = 3) -> ShapeProfile:
        """The profile a job of ``shape`` frames needs: its padded size, batches 1..shape.batch."""
        h, w = padded_size(shape.height, shape.width, multiple)
        opt = (shape.batch, channels, h, w)
        return cls((1, channels, h, w), opt, opt)

    def padded(self, multiple: int) -> ShapeProfile:
        """The same profile with every height and width rounded up to the generator's multiple."""

        def pad(d: Dims) -> Dims:
            h, w = padded_size(d[2], d[3], multiple)
            return (d[0], d[1], h, w)

        return ShapeProfile(pad(self.min), pad(self.opt), pad(self.max))

    def covers(self, dims: Dims) -> bool:
        """Whether an input of shape ``dims`` fits this profile."""
        return all(lo <= d <= hi for lo, d, hi in zip(self.min, dims, self.max, strict=True))

    def contains(self, other: ShapeProfile) -> bool:
        """Whether every shape ``other`` accepts fits this profile too."""
        return self.covers(other.min) and self.covers(other.max)

    def to_text(self) -> str:
        return ":".join("x".join(str(v) for v in d) for d in (self.min, self.opt, self.max))


# ----------------------------------------------------------------------------- engine keys


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialized TensorRT engine depends on."""

    model: str  # model_digest()
    profile: ShapeProfile
    precision: str
    gpu: str  # device name and compute capability, e.g. "NVIDIA L4 (sm_89)"
    tensorrt: str  # TensorRT version
    variant: str  # "plugins" (torch-tensorrt + Triton kernels) or "native" (ONNX parser)
    format: int = CACHE_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineKey:
        p = data["profile"]
        profile = ShapeProfile(tuple(p["min"]), tuple(p["opt"]), tuple(p["max"]))  # type: ignore[arg-type]
        return cls(**{**data, "profile": profile})

    def digest(self) -> str:
        """The engine's file name: ``key_digest`` of the key."""
        return key_digest(self.to_dict())

    def same_build(self, other: EngineKey) -> bool:
        """Same model, precision, GPU, TensorRT and variant; the profiles may differ."""
        return dataclasses.replace(self, profile=other.profile) == other


# ----------------------------------------------------------------------------- entries and their records


@dataclass(frozen=True)
class EntryRecord:
    """What the record beside a cache entry says: its bytes' SHA-256 and size, and what it was made from."""

    sha256: str
    size: int
    made_from: dict[str, Any]

    @classmethod
    def of_file(cls, path: Path, made_from: dict[str, Any]) -> EntryRecord:
        return cls(file_sha256(path), path.stat().st_size, made_from)

    @classmethod
    def from_dict(cls, data: Any) -> EntryRecord:
        record = cls(data["sha256"], data["size"], data["made_from"])
        if not (isinstance(record.sha256, str) and type(record.size) is int and isinstance(record.made_from, dict)):
            raise TypeError("not a cache record")
        return record


def record_path(entry: Path) -> Path:
    return entry.with_name(entry.name + RECORD_SUFFIX)


def private_folder(folder: Path) -> Path:
    """``folder``, created (with any missing parents) readable by the current user only (0700); an existing
    one of ours loses group and other permissions; one of another user's is refused."""
    missing = []
    at = folder
    while not at.exists():
        missing.append(at)
        at = at.parent
    try:
        for path in reversed(missing):
            with contextlib.suppress(FileExistsError):  # another process made it meanwhile
                path.mkdir(mode=0o700)
        st = folder.stat()
        if not stat.S_ISDIR(st.st_mode):
            raise BackendError(f"the cache folder {folder} is not a folder")
        if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
            raise BackendError(f"the cache folder {folder} belongs to another user; set {CACHE_ENV} to one of yours")
        if st.st_mode & 0o077:
            os.chmod(folder, 0o700)
    except OSError as e:
        raise BackendError(f"cannot use the cache folder {folder}: {e.strerror or e}") from None
    return folder


@contextlib.contextmanager
def entry_lock(entry: Path) -> Iterator[None]:
    """Hold ``entry``'s lock (an exclusive ``flock`` on ``NAME.lock`` beside it) while the entry is checked,
    made or removed, so processes sharing the cache never see one half made, nor make it twice at once."""
    folder = private_folder(entry.parent)
    if fcntl is None:
        yield
        return
    lock = folder / (entry.name + LOCK_SUFFIX)
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as e:
        raise BackendError(f"cannot lock the cache entry {entry}: {e.strerror or e}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as e:  # a file system without locks (some network mounts): entries are still checked
            log.debug("cannot lock %s (%s); going on without the lock", lock, e.strerror or e)
        yield
    finally:
        os.close(fd)  # releases the lock


def folder_lock(folder: Path) -> contextlib.AbstractContextManager[None]:
    """``entry_lock`` for a folder whose files a library writes itself (``.folder.lock`` inside it)."""
    return entry_lock(folder / ".folder")


def _read_record(entry: Path) -> EntryRecord | None:
    """The record of ``entry`` if it is a small regular file holding one; None otherwise (never blocks:
    a FIFO planted as a record is not opened)."""
    path = record_path(entry)
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_RECORD_BYTES:
            return None
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path, flags)
        with os.fdopen(fd, "rb") as f:
            return EntryRecord.from_dict(json.loads(f.read(MAX_RECORD_BYTES)))
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None


def _differs(made_from: dict[str, Any], wanted: dict[str, Any]) -> str | None:
    """The first field in which a record's ``made_from`` differs from what is wanted, if any."""
    wanted = json.loads(json.dumps(wanted))  # as the record has it: tuples are lists
    for name in sorted(set(made_from) | set(wanted)):
        if made_from.get(name) != wanted.get(name):
            return name
    return None


def _entry_problem(entry: Path, st: os.stat_result, made_from: dict[str, Any] | None) -> str | EntryRecord:
    """What is wrong with an existing entry, or its record when nothing is."""
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        return f"belongs to another user (uid {st.st_uid})"
    record = _read_record(entry)
    if record is None:
        return "has no readable record of its bytes"
    if made_from is not None and (field := _differs(record.made_from, made_from)) is not None:
        return f"was made for another {field} ({record.made_from.get(field)!r}, not {made_from.get(field)!r})"
    if st.st_size != record.size:
        return f"is {st.st_size} bytes where its record says {record.size} (truncated or changed)"
    if file_sha256(entry) != record.sha256:
        return "does not match the SHA-256 recorded when it was made (changed since)"
    return record


def discard_entry(entry: Path, why: str) -> None:
    """Remove an entry and its record, with a warning saying why; the caller makes it again."""
    log.warning("cache entry %s %s; not used, made again", entry, why)
    try:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink(missing_ok=True)
        record_path(entry).unlink(missing_ok=True)
    except OSError as e:
        raise BackendError(f"cannot remove the damaged cache entry {entry}: {e.strerror or e}") from None


def checked_entry(entry: Path, made_from: dict[str, Any] | None = None) -> EntryRecord | None:
    """The record of ``entry`` when its bytes are the ones recorded (and, if given, it was made from
    ``made_from``); None when there is no usable entry.  An entry that is there but damaged, changed,
    foreign or unrecorded is removed with a warning.  Call under ``entry_lock(entry)``."""
    try:
        st = os.lstat(entry)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise BackendError(f"cannot read the cache entry {entry}: {e.strerror or e}") from None
    found = _entry_problem(entry, st, made_from)
    if isinstance(found, EntryRecord):
        return found
    discard_entry(entry, found)
    return None


def _write_record(entry: Path, record: EntryRecord) -> None:
    with atomic_output(record_path(entry)) as tmp:
        tmp.write_text(json.dumps(dataclasses.asdict(record), indent=1, sort_keys=True))
    os.chmod(record_path(entry), 0o600)


def store_entry(entry: Path, made_from: dict[str, Any], write: Callable[[Path], object]) -> EntryRecord:
    """Make a cache entry: ``write(tmp)`` fills a temporary file that then replaces ``entry`` whole; the
    record (SHA-256, size, ``made_from``) follows.  The old record goes first, so it never vouches for
    new bytes.  Call under ``entry_lock(entry)``."""
    private_folder(entry.parent)
    record_path(entry).unlink(missing_ok=True)
    with atomic_output(entry) as tmp:
        write(tmp)
        record = EntryRecord.of_file(tmp, made_from)
    os.chmod(entry, 0o600)
    _write_record(entry, record)
    return record


def _signature(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_size, st.st_mtime_ns


def checked_folder(folder: Path) -> dict[str, tuple[int, int]]:
    """Check every file a library keeps in ``folder`` (OpenVINO's compiled blobs) against its record, removing
    those that do not match or have none; returns the size and modification time of those kept.  Call under
    ``folder_lock(folder)``."""
    kept = {}
    for path in sorted(private_folder(folder).iterdir()):
        if not path.name.endswith((RECORD_SUFFIX, LOCK_SUFFIX)) and checked_entry(path) is not None:
            kept[path.name] = _signature(path)
    for record in folder.glob("*" + RECORD_SUFFIX):  # records left without their file
        if not record.with_name(record.name[: -len(RECORD_SUFFIX)]).exists():
            record.unlink(missing_ok=True)
    return kept


def record_folder(folder: Path, made_from: dict[str, Any], kept: dict[str, tuple[int, int]]) -> None:
    """Record every regular file in ``folder`` that the library wrote since ``checked_folder`` returned ``kept``
    (new files, and files it rewrote).  Call under the same ``folder_lock(folder)``."""
    for path in sorted(folder.iterdir()):
        if path.name.endswith((RECORD_SUFFIX, LOCK_SUFFIX)) or not path.is_file() or path.is_symlink():
            continue
        if kept.get(path.name) != _signature(path):
            _write_record(path, EntryRecord.of_file(path, made_from))


# ----------------------------------------------------------------------------- engines and ONNX graphs


def engine_path(cache_dir: Path, key: EngineKey) -> Path:
    return cache_dir / "engines" / f"{key.digest()}.engine"


def _engine_records(cache_dir: Path) -> Iterator[tuple[Path, EngineKey]]:
    for record in sorted((cache_dir / "engines").glob("*.engine" + RECORD_SUFFIX)):
        engine = record.with_name(record.name[: -len(RECORD_SUFFIX)])
        found = _read_record(engine)
        try:
            if found is not None:
                yield engine, EngineKey.from_dict(found.made_from)
        except (ValueError, KeyError, TypeError, CycleStreamError):
            continue  # a damaged or foreign record: ignore it


def find_engine(cache_dir: Path, key: EngineKey) -> Path | None:
    """The cached engine for ``key``, else one built the same way whose profile contains key's; only an
    engine whose bytes match its record is returned (a damaged one is removed with a warning)."""
    exact = engine_path(cache_dir, key)
    candidates = [(exact, key)] + [
        (engine, other)
        for engine, other in _engine_records(cache_dir)
        if engine != exact and key.same_build(other) and other.profile.contains(key.profile)
    ]
    for engine, made_from in candidates:
        with entry_lock(engine):
            if checked_entry(engine, made_from.to_dict()) is not None:
                return engine
    return None


def store_engine(cache_dir: Path, key: EngineKey, data: bytes) -> Path:
    """Write the engine and its record; returns the engine's path."""
    path = engine_path(cache_dir, key)
    with entry_lock(path):
        store_entry(path, key.to_dict(), lambda tmp: tmp.write_bytes(data))
    return path


@cache
def package_version(package: str) -> str:
    """An installed distribution's version, or "none"."""
    try:
        return version(package)
    except PackageNotFoundError:
        return "none"


def onnx_key(model: str, precision: str, opset: int) -> dict[str, Any]:
    """What an exported ONNX graph depends on: the model's digest, the precision, the opset and the
    exporting libraries' versions."""
    return {
        "model": model,
        "precision": precision,
        "opset": opset,
        "torch": torch.__version__,
        "onnxscript": package_version("onnxscript"),
        "format": CACHE_FORMAT,
    }


def onnx_cache_path(cache_dir: Path, model: str, precision: str, opset: int) -> Path:
    """Where the exported ONNX graph of a model lives (dynamic batch, height and width)."""
    return cache_dir / "onnx" / f"{key_digest(onnx_key(model, precision, opset))}.onnx"
