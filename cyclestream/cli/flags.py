"""Command-line flags generated from options dataclasses (``engine/options.py``), and the dataclasses
built back from the parsed flags.

A field ``batch_size: int = option(1, min=1, help="frames per model call")`` becomes
``--batch-size N`` with help "frames per model call (default 1)", an argparse type that applies the
same range check as the dataclass, and ``dest="batch_size"``.  Nested options (``TranslateOptions.run``)
are flattened into the same parser, with the defaults of the parent's instance (``stream``'s encoder
defaults are not ``translate``'s).  So a default and a help text are written once, in the dataclass.

- ``bool`` fields: ``--name`` (default False) or ``--no-name`` (default True: help "no " + the field's help;
  a spec's own flag keeps its help as written); ``bool | None``: ``--name/--no-name``;
- ``Path | bool`` fields: ``--name PATH`` and ``--no-name``;
- ``tuple[X, ...]`` fields: one argument that the spec's ``parse`` splits (``comma_list``: ``--batch 1,2,4``),
  each item checked as a field of type X (choices, ranges);
- a spec's ``flag=""`` keeps a field off the command line (the command fills it in: ``progress`` from
  ``--quiet``); a flag without dashes (``flag="TEACHER"``) is a positional argument of that metavar.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from cyclestream.engine.options import (
    OptionError,
    Options,
    Spec,
    allowed,
    base_type,
    build,
    coerce,
    field_default,
    literal_values,
    nested_options,
    options_fields,
    variadic_item,
)


def flag_name(name: str, spec: Spec | None) -> str:
    return spec.flag if spec is not None and spec.flag is not None else "--" + name.replace("_", "-")


def describe_default(value: Any, spec: Spec | None, hint: Any = None) -> str | None:
    """How --help says a default: the spec's words for a None or True/False default (``keep their size``),
    else the value (``320x240`` for a size, ``a,b`` for names, ``0,3`` or ``256x256`` for a ``tuple[X, ...]``
    as it is typed, ``10`` for 10.0)."""
    if value is None or value is dataclasses.MISSING or isinstance(value, bool):
        return spec.default_text if spec is not None else None
    item = variadic_item(hint)
    if item is not None and isinstance(value, tuple) and value:
        return ",".join(str(describe_default(v, None, item)) for v in value)
    if isinstance(value, tuple) and value and all(isinstance(v, str) for v in value):
        return ",".join(value)
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}x{value[1]}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def help_text(spec: Spec, default: Any, hint: Any = None) -> str:
    said = describe_default(default, spec, hint)
    return spec.help if said is None else f"{spec.help} (default {said})"


def value_parser(hint: Any, spec: Spec | None) -> Callable[[str], Any]:
    """Command-line text → a value checked as the dataclass checks it; argparse reports the failure."""
    base = base_type(hint)
    convert: Callable[[str], Any] = (spec.parse if spec is not None and spec.parse is not None
                                     else base if base in (int, float, str, Path) else str)

    def parse(text: str) -> Any:
        try:
            return coerce(convert(text), hint, spec)  # a ValueError: argparse says "invalid integer value: 'TEXT'"
        except OptionError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = {int: "integer", float: "number"}.get(base, getattr(base, "__name__", "value"))
    return parse


def add_options(parser: Any, cls: type[Options], *, defaults: Options | None = None,
                only: Iterable[str] | None = None, title: str | None = None, required: Iterable[str] = (),
                default_texts: Mapping[str, str] | None = None) -> None:
    """Add a flag for each command-line field of ``cls`` (and of its nested options) to ``parser``.

    ``defaults``: an instance whose values are the flags' defaults (the class's own by default);
    ``only``: the field names to expose (for a nested field: its ``Spec.fields``); ``required``: fields
    this command needs given although the library has a default (a run folder); ``default_texts``: how
    --help says the default of fields this command decides itself (a None its task fills in), by name.
    Each flag's dest is its field's name: two exposed fields of one name in one command are a conflict
    argparse reports."""
    target = parser.add_argument_group(title) if title else parser
    required = set(required)
    for f, hint, spec, default in _exposed(cls, defaults, only):
        inner = nested_options(hint)
        if inner is not None:
            add_options(parser, inner, defaults=default if isinstance(default, inner) else None,
                        only=spec.fields if spec else None, title=spec.help if spec else None,
                        required=required, default_texts=default_texts)
        else:
            assert spec is not None
            if default_texts and f.name in default_texts:
                spec = dataclasses.replace(spec, default_text=default_texts[f.name])
            _add_flag(target, f.name, hint, spec, default, f.name in required)


def _exposed(cls: type[Options], defaults: Options | None,
             only: Iterable[str] | None) -> Iterable[tuple[dataclasses.Field[Any], Any, Spec | None, Any]]:
    """The fields of ``cls`` on the command line (nested options included), each with its default."""
    wanted = set(only) if only is not None else None
    for f, hint, spec in options_fields(cls):
        if wanted is not None and f.name not in wanted:
            continue
        if nested_options(hint) is None and (spec is None or spec.flag == ""):
            continue
        yield f, hint, spec, (getattr(defaults, f.name) if defaults is not None else field_default(f))


def _add_flag(target: Any, name: str, hint: Any, spec: Spec, default: Any, required: bool = False) -> None:
    """The flag(s) of one field; each action keeps its field's spec and default (``action.option``), so
    tests can tell generated flags from hand-written ones."""
    for action in _add_arguments(target, name, hint, spec, default, required):
        action.option = (spec, default)


def _add_arguments(target: Any, name: str, hint: Any, spec: Spec, default: Any,
                   required: bool = False) -> list[argparse.Action]:
    flag = flag_name(name, spec)
    base = base_type(hint)
    if not flag.startswith("-"):  # a positional argument, always given
        return [target.add_argument(name, metavar=flag, type=value_parser(hint, spec), help=spec.help)]
    if base is bool:
        if spec.flag is None and default is None:  # bool | None: both forms, None when neither is given
            return [target.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None,
                                        help=help_text(spec, None))]
        if spec.flag is None and default:  # on unless turned off
            return [target.add_argument("--no-" + flag.removeprefix("--"), dest=name, action="store_false",
                                        default=True, help=f"no {spec.help}")]
        action = "store_false" if default else "store_true"
        return [target.add_argument(flag, dest=name, action=action, default=default, help=spec.help)]
    kinds = getattr(hint, "__args__", ())
    if bool in kinds and Path in kinds:  # a path, or True (the usual place) / False (none)
        return [
            target.add_argument(flag, dest=name, type=value_parser(Path, spec), default=default,
                                metavar=spec.metavar or "PATH", help=help_text(spec, default)),
            target.add_argument("--no-" + flag.removeprefix("--"), dest=name, action="store_false",
                                help=f"no {spec.help.split(':')[0].split(' (')[0]}"),
        ]
    choices = None if variadic_item(hint) is not None else allowed(hint, spec)  # a list's items: checked by type=
    missing = default is dataclasses.MISSING
    return [target.add_argument(
        flag, dest=name, default=None if missing else default, required=required or missing,
        type=None if choices and literal_values(hint) else value_parser(hint, spec),
        choices=choices, metavar=spec.metavar, help=spec.help if required else help_text(spec, default, hint),
    )]


def from_args(cls: type[Options], args: argparse.Namespace, *, defaults: Options | None = None,
              only: Iterable[str] | None = None, **given: Any) -> Any:
    """An instance of ``cls`` from flags added by :func:`add_options` with the same ``defaults`` and
    ``only``; ``given`` fills (at every level) the fields the command computes itself (``progress`` from
    ``--quiet``); the other fields keep their defaults.  A bad combination raises OptionError."""
    parsed = vars(args)
    values = {name: parsed[name] for name in _flag_names(cls, defaults, only) if name in parsed}
    return build(cls, values | given, defaults=defaults)


def _flag_names(cls: type[Options], defaults: Options | None, only: Iterable[str] | None) -> Iterable[str]:
    for f, hint, spec, default in _exposed(cls, defaults, only):
        inner = nested_options(hint)
        if inner is None:
            yield f.name
        else:
            yield from _flag_names(inner, default if isinstance(default, inner) else None,
                                   spec.fields if spec else None)
