"""What a batch translates and what it may skip: items from files, folders and manifests; finished records.

An *item* is one input file and the output it becomes under the output folder (the same relative name).
Every output and record lies inside the output folder once links are resolved: an entry whose name would
lead elsewhere (``../`` in a manifest, a link inside the output folder) is refused before any work.  Only
regular files are read: a FIFO, socket or device in a folder is skipped with a line, named directly it is
refused (opening one would block, or never end).
A *record* (``OUT/.cyclestream/done/REL.json``) is written once an output is complete; a rerun skips an
item only when its output is there with the recorded size and fingerprint (``paths.ends_sha256``) and the
record matches the model's digest, the settings that change pixels and the input's size and modification
time.  An item to redo has its record removed before any work, so an output replaced by a crashed run can
never look finished.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cyclestream.engine.atomic import atomic_output
from cyclestream.engine.errors import MediaError, OutputError
from cyclestream.engine.jobs.translate import TranslateOptions
from cyclestream.engine.media.probe import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from cyclestream.engine.paths import check_inside, check_not_input, ends_sha256, same_file

log = logging.getLogger("cyclestream")

MANIFEST_SUFFIXES = frozenset({".txt", ".list", ".lst"})
WORK_FOLDER = ".cyclestream"  # under the output folder: records and unfinished segments
RECORD_VERSION = 2  # 2: the output's fingerprint
_SPECIAL = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
            (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


@dataclass(frozen=True)
class Item:
    input: Path
    output: Path
    rel: str  # the output's name relative to the output folder (how the summary names the item)
    kind: str  # "video" or "image"


def items_text(count: int) -> str:
    """"1 item", "3 items"."""
    return f"{count} item" + "s" * (count != 1)


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    return "image" if suffix in IMAGE_SUFFIXES else "video" if suffix in VIDEO_SUFFIXES else None


def _special(path: Path) -> str | None:
    """What ``path`` is when it is not a regular file ("a FIFO (named pipe)", "a socket", ...), links
    followed; None for a regular file, and for one that cannot be reached (opening it says why)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    return None if stat.S_ISREG(mode) else next((name for test, name in _SPECIAL if test(mode)), "not a file")


def check_input(path: Path, where: str = "") -> None:
    """One MediaError (``where`` before it, e.g. "list.txt:3: ") unless ``path`` is a folder or a regular
    file: it cannot be reached (a loop of symbolic links, a link to nothing, no permission), or it is a
    FIFO, a socket or a device."""
    try:
        path.stat()
    except OSError as e:
        raise MediaError(f"{where}cannot read {path}: {e.strerror or e}") from None
    special = None if path.is_dir() else _special(path)
    if special:
        raise MediaError(f"{where}{path} is {special}, not a regular file (only regular files are read)")


def _folder_files(folder: Path, exclude: Path) -> list[Path]:
    """Videos and images below ``folder``, by name; hidden files and folders and the output folder skipped,
    and (with a line each) what is not a regular file.  An entry that cannot be reached is kept: its item
    fails with the reason."""
    skip = exclude.resolve()
    found = []
    for root, dirs, files in os.walk(folder):
        base = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (base / d).resolve() != skip)
        for name in sorted(files):
            path = base / name
            if name.startswith(".") or not _kind(path):
                continue
            special = _special(path)
            if special:
                log.warning("skipped %s: %s, not a regular file", path, special)
                continue
            found.append(path)
    return found


def _manifest_entries(manifest: Path) -> list[tuple[Path, int]]:
    """(path, line number) of each entry: one path a line, relative to the manifest's folder; blank lines
    and lines starting with # are skipped.  A line that cannot be read or names nothing: one clear error."""
    try:
        raw = manifest.read_bytes()
    except OSError as e:
        raise MediaError(f"cannot read manifest {manifest}: {e.strerror or e}") from None
    entries = []
    for number, line in enumerate(raw.splitlines(), 1):
        try:
            text = line.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise MediaError(f"{manifest}:{number}: not UTF-8 text (a manifest lists one path a line)") from None
        if not text or text.startswith("#"):
            continue
        path = Path(text).expanduser()
        path = path if path.is_absolute() else manifest.parent / path
        if not path.exists() and not path.is_symlink():
            raise MediaError(f"{manifest}:{number}: not found: {text}")
        check_input(path, f"{manifest}:{number}: ")
        entries.append((path, number))
    return entries


def _relative(path: Path, base: Path | None) -> Path:
    """``path`` relative to ``base`` (as written, then absolute, then with links resolved), else its name."""
    if base is not None:
        spellings = (lambda: (path, base), lambda: (path.absolute(), base.absolute()),
                     lambda: (path.resolve(), base.resolve()))
        for spelling in spellings:  # one at a time: resolving fails on a loop of links
            try:
                p, b = spelling()
                return p.relative_to(b)
            except (ValueError, OSError, RuntimeError):
                continue
    return Path(path.name)


def _output_name(rel: Path, out_dir: Path, what: str) -> Path:
    """``rel`` as an output name below ``out_dir``: "a/./b/../c" is "a/c"; a name that climbs out of the
    folder, or into the batch's own work folder, is refused (``what`` names the entry)."""
    name = Path(os.path.normpath(rel))
    if name.is_absolute() or name.parts[:1] in ((os.pardir,), (os.curdir,)):
        raise OutputError(f"{what}: refusing it: its output name {rel.as_posix()} leads outside {out_dir} (a "
                          "manifest's relative paths become output names below --out; name a file above the "
                          "manifest's folder by its absolute path, and it is written under its own name)")
    if name.parts[0] == WORK_FOLDER:
        raise OutputError(f"{what}: refusing it: its output would be inside {out_dir / WORK_FOLDER}, the "
                          "batch's own records")
    return name


def find_items(inputs: Sequence[Path], out_dir: Path, container: str | None = None) -> list[Item]:
    """Every item of ``inputs`` (files, folders searched recursively for videos and images, manifests),
    with its output under ``out_dir``: a folder's files keep their names relative to it, a manifest's
    entries relative to the manifest's folder, a file its name.  ``container`` (e.g. "mkv") replaces
    the suffix of video outputs.  Refused, before any work: two items with one output, an output that is
    an input, an output or record that would lie outside ``out_dir``, a named input that is not a regular
    file or folder."""
    if container and not re.fullmatch(r"[A-Za-z0-9]+", container.lstrip(".")):
        raise OutputError(f"--container {container!r}: expected a file suffix such as mkv or mp4")
    found: list[tuple[Path, Path, str]] = []  # (input, relative output, how the user named it)

    def add(path: Path, base: Path | None, what: str) -> None:
        if path.is_dir():
            for f in _folder_files(path, out_dir):
                found.append((f, _relative(f, base if base is not None else path), str(f)))
        else:
            found.append((path, _relative(path, base), what))

    for given in inputs:
        path = Path(given)
        if not path.exists() and not path.is_symlink():
            raise MediaError(f"input not found: {path}")
        check_input(path)
        if path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
            for entry, number in _manifest_entries(path):
                add(entry, path.parent, f"{path}:{number}")
        else:
            add(path, None, str(path))
    items: dict[Path, Item] = {}
    for path, written, what in found:
        rel = _output_name(written, out_dir, what)
        kind = _kind(path) or "video"  # a file named on its own is read as a video, as translate does
        if kind == "video" and container:
            rel = rel.with_suffix("." + container.lstrip("."))
        item = Item(path, out_dir / rel, rel.as_posix(), kind)
        check_inside(item.output, out_dir, what)
        check_inside(record_path(out_dir, item.rel), out_dir, what)
        other = items.get(item.output)
        if other is not None:
            if same_file(other.input, path):
                continue  # the same file named twice
            raise OutputError(f"{other.input} and {path} would both be written to {item.output} "
                              "(give their common folder, or a manifest from it, to keep their relative names)")
        check_not_input(path, item.output)
        items[item.output] = item
    if not items:
        raise MediaError(f"no videos or images in {', '.join(str(p) for p in inputs)}")
    return list(items.values())


# ----------------------------------------------------------------------------- records



def pixel_settings(options: TranslateOptions) -> dict[str, Any]:
    """The options that change an output's pixels (backend, device, batch size, workers and segmenting
    change them by float rounding or codec noise at most, and are not part of it)."""
    enc, run = options.encode, options.run
    return {
        "size": list(run.size) if run.size else None,
        "precision": run.precision,
        "target": run.target, "z_seed": run.z_seed, "z_walk": run.z_walk,
        "norm_stats": run.norm_stats, "dropout": run.dropout, "upsample": run.upsample,
        "temporal": "blend" if options.temporal == "on" else options.temporal,
        "deinterlace": options.deinterlace,
        "codec": enc.codec, "crf": enc.crf, "preset": enc.preset, "pix_fmt": enc.pix_fmt,
        "tune": enc.encoder_tune, "gop": enc.gop,
    }


def settings_digest(model_sha256: str, options: TranslateOptions) -> str:
    text = json.dumps({"model": model_sha256, "settings": pixel_settings(options)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def record_path(out_dir: Path, rel: str) -> Path:
    return out_dir / WORK_FOLDER / "done" / f"{rel}.json"


def input_identity(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def new_record(item: Item, digest: str, model_sha256: str, options: TranslateOptions) -> dict[str, Any]:
    """What a finished item's record says; ``frames`` and ``output_size`` are added when it is written."""
    return {
        "version": RECORD_VERSION, "output": item.rel, "digest": digest, "model_sha256": model_sha256,
        "settings": pixel_settings(options),
        "input": {"path": str(item.input.absolute()), **input_identity(item.input)},
    }


def write_record(out_dir: Path, item_rel: str, *, output: Path, record: dict[str, Any], frames: int) -> None:
    path = record_path(out_dir, item_rel)
    done = {**record, "frames": frames, "output_size": output.stat().st_size, "output_ends_sha256": ends_sha256(output)}
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(done, indent=1, sort_keys=True) + "\n")


def is_finished(out_dir: Path, item: Item, digest: str) -> bool:
    """Whether ``item``'s output is complete from a run with the same model and settings, on this input."""
    try:
        record = json.loads(record_path(out_dir, item.rel).read_text())
        return (
            record.get("version") == RECORD_VERSION
            and record.get("digest") == digest
            and {k: record["input"].get(k) for k in ("size", "mtime_ns")} == input_identity(item.input)
            and item.output.is_file()
            and item.output.stat().st_size == record.get("output_size")
            and ends_sha256(item.output) == record.get("output_ends_sha256")  # not replaced by other bytes
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def forget(out_dir: Path, item: Item) -> None:
    """Remove the record of an item about to be redone (a record that does not match says nothing true);
    one that cannot be removed (a folder in its place, no permission) fails that item."""
    path = record_path(out_dir, item.rel)
    try:
        path.unlink(missing_ok=True)
    except OSError as e:
        raise OutputError(f"cannot remove its record {path}: {e.strerror or e}") from None
