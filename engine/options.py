"""Options: frozen, keyword-only dataclasses that check themselves, each field's help beside it.

A field is declared once, with :func:`option`: its default, one line of help, its allowed values (a
``Literal`` type's values, or ``choices``) and its range (``min``, ``max``, ``above``).  Constructing an
:class:`Options` subclass checks every field against that declaration and then calls ``check()`` for
combinations, so ``RunOptions(batch_size=0)`` fails at once with one line naming the field.  The
command line's flags are generated from the same fields (``cyclestream/cli/flags.py``): a default and
a help text exist once, and the library and the command line cannot disagree.

This module imports nothing heavy (no torch, no PyAV): ``cyclestream --help`` reads every declaration.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from cyclestream.engine.errors import CycleStreamError

_KEY = "cyclestream.option"


class OptionError(CycleStreamError, ValueError):
    """An option value that cannot work: named by its class and field (``RunOptions.batch_size: …``)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Spec:
    """What :func:`option` records about a field (in ``field.metadata``)."""

    help: str
    choices: tuple[Any, ...] | None = None  # allowed values besides a Literal type's (e.g. backend names)
    min: float | None = None  # value >= min
    max: float | None = None  # value <= max
    above: float | None = None  # value > above
    flag: str | None = None  # the command-line flag when it is not --FIELD-NAME; "" keeps it off the command line
    metavar: str | None = None
    parse: Callable[[str], Any] | None = None  # command-line text → value, where the type alone does not say how
    default_text: str | None = None  # how --help says the default, where the value would not say it well
    fields: tuple[str, ...] | None = None  # a nested Options field: which of its fields are on the command line


def option(default: Any = dataclasses.MISSING, *, help: str,
           default_factory: Any = dataclasses.MISSING, **spec: Any) -> Any:
    """A dataclass field with its help text and allowed values (see :class:`Spec` for ``spec``)."""
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={_KEY: Spec(help=help, **spec)})


def progress_option() -> Any:
    """The ``progress`` field every job has: bars or lines on stderr (the command line turns it off with -q)."""
    return option(True, flag="", help="progress bars on stderr")


def spec_of(f: dataclasses.Field[Any]) -> Spec | None:
    return f.metadata.get(_KEY)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Options:
    """Base of every options dataclass: checks its fields when constructed (``check()`` for combinations)."""

    def __post_init__(self) -> None:
        hints = type_hints(type(self))
        for f in dataclasses.fields(self):
            spec = spec_of(f)
            value = getattr(self, f.name)
            try:
                coerced = coerce(value, hints[f.name], spec)
            except OptionError as e:
                raise OptionError(f"{type(self).__name__}.{f.name}: {e}") from None
            if coerced is not value:
                object.__setattr__(self, f.name, coerced)  # "x.mp4" → Path, 1 → 1.0
        self.check()

    def check(self) -> None:
        """Combinations of fields that cannot work: raise :class:`OptionError` naming them."""

    def fail(self, field: str, message: str) -> OptionError:
        return OptionError(f"{type(self).__name__}.{field}: {message}")


@functools.cache
def type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def field_default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def options_fields(cls: type) -> Iterator[tuple[dataclasses.Field[Any], Any, Spec | None]]:
    """Each field of an options class with its resolved type and spec."""
    hints = type_hints(cls)
    for f in dataclasses.fields(cls):
        yield f, hints[f.name], spec_of(f)


def build(cls: type[Options], values: Mapping[str, Any], *, defaults: Options | None = None) -> Any:
    """An instance of ``cls`` from flat values: each value goes to the field of its name at every level
    (nested options are flattened, as on the command line), the other fields keep their defaults
    (``defaults``' values where given)."""
    kwargs: dict[str, Any] = {}
    for f, hint, _spec in options_fields(cls):
        default = getattr(defaults, f.name) if defaults is not None else field_default(f)
        inner = nested_options(hint)
        if f.name in values:
            kwargs[f.name] = values[f.name]
        elif inner is not None:
            kwargs[f.name] = build(inner, values, defaults=default if isinstance(default, inner) else None)
        elif default is dataclasses.MISSING:
            raise OptionError(f"{cls.__name__}.{f.name}: must be given")
        else:
            kwargs[f.name] = default
    return cls(**kwargs)


def flat_names(cls: type[Options]) -> set[str]:
    """Every field name of ``cls`` and of its nested options."""
    names: set[str] = set()
    for f, hint, _spec in options_fields(cls):
        inner = nested_options(hint)
        names |= flat_names(inner) if inner is not None else {f.name}
    return names


def from_keywords(cls: type[Options], keywords: Mapping[str, Any]) -> Any:
    """:func:`build`, refusing a keyword that names no field (``translate_file(..., crf=0, backend="openvino")``)."""
    unknown = sorted(set(keywords) - flat_names(cls))
    if unknown:
        raise OptionError(f"{cls.__name__} has no option {', '.join(unknown)} "
                          f"(options: {', '.join(sorted(flat_names(cls)))})")
    return build(cls, keywords)


# ----------------------------------------------------------------------------- types


def _members(hint: Any) -> tuple[Any, ...]:
    """The alternatives of a union (``X | None``), or the type itself."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def optional(hint: Any) -> bool:
    return type(None) in _members(hint)


def base_type(hint: Any) -> Any:
    """``int | None`` → ``int``; ``Literal['a', 'b']`` stays itself."""
    members = [m for m in _members(hint) if m is not type(None)]
    return members[0] if len(members) == 1 else hint


def literal_values(hint: Any) -> tuple[Any, ...] | None:
    base = base_type(hint)
    return typing.get_args(base) if typing.get_origin(base) is Literal else None


def nested_options(hint: Any) -> type[Options] | None:
    base = base_type(hint)
    return base if isinstance(base, type) and issubclass(base, Options) else None


def variadic_item(hint: Any) -> Any:
    """``tuple[X, ...]`` → ``X``; None for any other type (a fixed-length tuple such as a size included)."""
    base = base_type(hint)
    if typing.get_origin(base) is tuple:
        args = typing.get_args(base)
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0]
    return None


def allowed(hint: Any, spec: Spec | None) -> tuple[Any, ...] | None:
    return (spec.choices if spec is not None else None) or literal_values(hint)


def coerce(value: Any, hint: Any, spec: Spec | None) -> Any:
    """``value`` checked against the field's type and spec (and converted where that is plain: a str to a
    Path, an int to a float); raises OptionError with the reason."""
    if value is None:
        if optional(hint) or hint is Any:
            return value
        raise OptionError("must be given (got None)")
    base = base_type(hint)
    item = variadic_item(base)
    if item is not None:  # tuple[X, ...]: each item checked as a field of type X with the same spec
        if not isinstance(value, tuple | list):
            raise OptionError(f"must be a tuple, got {value!r}")
        return tuple(coerce(v, item, spec) for v in value)
    choices = allowed(hint, spec)
    if choices is not None:
        if value not in choices:
            raise OptionError(f"must be one of {', '.join(map(str, choices))}; got {value!r}")
        return value
    if base is bool:
        if not isinstance(value, bool):
            raise OptionError(f"must be True or False, got {value!r}")
    elif base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise OptionError(f"must be an integer, got {value!r}")
    elif base is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise OptionError(f"must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            bound = spec and (spec.above if spec.above is not None else spec.min)
            raise OptionError(f"must be a number greater than {bound:g}, got {value}" if bound is not None
                              else f"must be a finite number, got {value}")
    elif base is Path:
        if isinstance(value, str):
            value = Path(value)
        elif not isinstance(value, Path):
            raise OptionError(f"must be a path, got {value!r}")
    elif base is str:
        if not isinstance(value, str):
            raise OptionError(f"must be a string, got {value!r}")
    elif typing.get_origin(base) is tuple:
        value = _coerce_tuple(value, base)
    elif isinstance(base, type) and not isinstance(value, base):
        raise OptionError(f"must be a {base.__name__}, got {value!r}")
    if spec is not None and isinstance(value, int | float) and not isinstance(value, bool):
        _check_range(value, spec)
    return value


def _coerce_tuple(value: Any, base: Any) -> tuple[Any, ...]:
    args = typing.get_args(base)
    if not isinstance(value, tuple | list):
        raise OptionError(f"must be a tuple, got {value!r}")
    if args and args[-1] is not Ellipsis and len(value) != len(args):
        raise OptionError(f"must have {len(args)} items, got {value!r}")
    if args == (int, int):  # a size: (width, height)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value):
            raise OptionError(f"must be two positive integers (width, height), got {value!r}")
    return tuple(value)


def _check_range(value: float, spec: Spec) -> None:
    if spec.min is not None and spec.max is not None and not spec.min <= value <= spec.max:
        raise OptionError(f"must be between {spec.min:g} and {spec.max:g}, got {value:g}")
    if spec.min is not None and value < spec.min:
        raise OptionError(f"must be at least {spec.min:g}, got {value:g}")
    if spec.max is not None and value > spec.max:
        raise OptionError(f"must be at most {spec.max:g}, got {value:g}")
    if spec.above is not None and not value > spec.above:
        raise OptionError(f"must be a number greater than {spec.above:g}, got {value:g}")


# ----------------------------------------------------------------------------- shared value types


MAX_SIDE = 16384


def parse_size(text: str) -> tuple[int, int]:
    """'640x360' → (640, 360)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise OptionError(f"expected WIDTHxHEIGHT such as 640x360, got {text!r}") from None
    if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE):
        raise OptionError(f"unsupported size {w}x{h} (sides from 1 to {MAX_SIDE})")
    return w, h


def comma_list(item: Callable[[str], Any] = str) -> Callable[[str], tuple[Any, ...]]:
    """A ``parse=`` for a ``tuple[X, ...]`` field: 'a,b' → (item('a'), item('b')), blanks around items ignored."""
    noun = {int: "an integer", float: "a number"}.get(item, "valid")

    def parse(text: str) -> tuple[Any, ...]:
        parts = [part.strip() for part in text.split(",")]
        if not all(parts):
            raise OptionError(f"expected a comma-separated list without empty items, got {text!r}")
        values = []
        for part in parts:
            try:
                values.append(item(part))
            except OptionError:
                raise
            except ValueError:
                raise OptionError(f"{part!r} is not {noun} (in {text!r})") from None
        return tuple(values)

    return parse


def resolve_device(device: str, *, cuda_available: Callable[[], bool] | None = None) -> str:
    """``auto`` → ``cuda`` where torch sees a GPU, else ``cpu``; any other device as given."""
    if device != "auto":
        return device
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available
    return "cuda" if cuda_available() else "cpu"


DEVICE_HELP = "auto (cuda when torch sees a GPU, else cpu), cpu, cuda or cuda:N"


def valid_device(device: str) -> bool:
    kind, _, index = device.partition(":")
    if kind == "cuda" and index:
        return index.isdigit()
    return device in ("auto", "cpu", "cuda")
