"""One source for every option: each options dataclass checks itself, the command line's flags are generated
from the same fields (a default and a help text exist once), and the library and the CLI agree."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import pkgutil
from pathlib import Path
from typing import Any

import pytest
import torch

from cyclestream.cli import build_parser
from cyclestream.engine.options import (
    OptionError,
    Options,
    allowed,
    base_type,
    field_default,
    nested_options,
    options_fields,
    resolve_device,
)


def option_modules() -> list[str]:
    """Every module of the package that declares options (``options.py``, ``*_options.py``): the walk
    below sees all of them, whichever tests ran before."""
    import cyclestream

    return sorted(m.name for m in pkgutil.walk_packages(cyclestream.__path__, "cyclestream.")
                  if m.name.rpartition(".")[2].endswith("options"))


OPTION_MODULES = option_modules()


def all_option_classes() -> list[type[Options]]:
    for name in OPTION_MODULES:
        importlib.import_module(name)
    found: list[type[Options]] = []
    todo = list(Options.__subclasses__())
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return sorted(found, key=lambda c: c.__name__)


def sample_value(hint: Any) -> Any:
    """A valid value for a required field."""
    choices = allowed(hint, None)
    if choices:
        return choices[0]
    return {str: "x", int: 1, float: 1.0, Path: Path("x")}.get(base_type(hint), None)


def required_values(cls: type[Options]) -> dict[str, Any]:
    return {f.name: sample_value(hint) for f, hint, _ in options_fields(cls)
            if field_default(f) is dataclasses.MISSING}


def bad_values(cls: type[Options]) -> list[tuple[str, Any]]:
    """(field, a value its declaration refuses) for each field with a declared range, choice or type."""
    out = []
    for f, hint, spec in options_fields(cls):
        if nested_options(hint) is not None:
            continue
        base = base_type(hint)
        if allowed(hint, spec):
            out.append((f.name, "no-such-choice"))
        elif spec is not None and spec.min is not None:
            out.append((f.name, spec.min - 1))
        elif spec is not None and spec.above is not None:
            out.append((f.name, spec.above))
        elif base in (int, float):
            out.append((f.name, "not a number"))
        elif base is bool:
            out.append((f.name, "yes"))
    return out


CLASSES = all_option_classes()


def test_every_options_class_is_frozen_and_keyword_only() -> None:
    assert len(CLASSES) >= 6
    for cls in CLASSES:
        params = dataclasses.fields(cls)
        assert all(f.kw_only for f in params), cls.__name__
        instance = cls(**required_values(cls))
        with pytest.raises(dataclasses.FrozenInstanceError):
            instance.__setattr__(params[0].name, None)
        for f, _hint, spec in options_fields(cls):
            assert spec is not None and spec.help, f"{cls.__name__}.{f.name} has no help text"


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_a_bad_value_is_refused_in_one_line_naming_the_field(cls: type[Options]) -> None:
    cases = bad_values(cls)
    if all(nested_options(hint) is not None for _, hint, _ in options_fields(cls)):
        return  # a group of groups (TrainOptions): each group is checked itself
    assert cases, f"{cls.__name__} declares nothing to check"
    for name, value in cases:
        with pytest.raises(OptionError) as e:
            cls(**(required_values(cls) | {name: value}))
        message = str(e.value)
        assert message.startswith(f"{cls.__name__}.{name}: ") and "\n" not in message, message


def test_a_name_means_one_thing_across_nested_options() -> None:
    """Keywords and flags are flat (``translate_file(..., crf=20, backend="eager")``), so a field name that
    appears at two levels of one options tree must be the same kind of thing (``progress`` is; a string
    ``tune`` beside a boolean one was not)."""

    def names(cls: type[Options], seen: dict[str, tuple[str, Any]]) -> None:
        for f, hint, _spec in options_fields(cls):
            inner = nested_options(hint)
            if inner is not None:
                names(inner, seen)
                continue
            where, kind = seen.setdefault(f.name, (f"{cls.__name__}.{f.name}", base_type(hint)))
            assert kind == base_type(hint), f"{where} and {cls.__name__}.{f.name} share a name but not a type"

    for cls in CLASSES:
        names(cls, {})


def commands(parser: argparse.ArgumentParser, path: str = "") -> list[tuple[str, argparse.ArgumentParser]]:
    """Every leaf command's parser: ('translate', p), ('bench model', p), ..."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [(path.strip(), parser)]
    return [leaf for name, sub in subs[0].choices.items() for leaf in commands(sub, f"{path} {name}")]


def generated_field_names() -> set[str]:
    return {f.name for cls in CLASSES for f, hint, _ in options_fields(cls) if nested_options(hint) is None}


def test_generated_flags_carry_the_declared_default_and_help() -> None:
    checked = 0
    for name, parser in commands(build_parser()):
        for action in parser._actions:
            declared = getattr(action, "option", None)
            if declared is None:
                continue
            spec, default = declared
            negative = action.option_strings[:1] and action.option_strings[0].startswith("--no-")
            if negative and action.const is False:  # --no-preview, the opposite of --preview PATH
                continue
            assert action.default == default or (action.required and default is dataclasses.MISSING), name
            assert action.help is not None and action.help.startswith(spec.help.split(":")[0].split(" (")[0]), \
                f"{name} {action.option_strings}"
            checked += 1
    assert checked > 50


def test_no_hand_written_flag_repeats_a_declared_option() -> None:
    """A flag a command adds by hand must not be a field an options class declares (that would be a second
    default and help text for one thing).  The arguments only a command has are listed here."""
    command_only = {"help", "model", "student", "source", "sink", "input", "output", "inputs", "out", "stats_json"}
    fields = generated_field_names()
    for name, parser in commands(build_parser()):
        for action in parser._actions:
            if getattr(action, "option", None) is None and action.dest not in command_only:
                assert action.dest not in fields, (
                    f"`{name}` declares --{action.dest.replace('_', '-')} by hand; declare it in its options class")


@pytest.mark.parametrize("command", [["translate", "a.mp4", "b.mp4"], ["stream", "--source", "s"], ["serve"],
                                     ["demo"]])
def test_library_and_command_line_defaults_agree(command: list[str]) -> None:
    from cyclestream.cli.flags import from_args
    from cyclestream.engine.jobs.options import StreamOptions, TranslateOptions
    from cyclestream.engine.serve.options import ServeOptions

    args = build_parser().parse_args(command)
    cls = {"translate": TranslateOptions, "demo": TranslateOptions, "stream": StreamOptions,
           "serve": ServeOptions}[command[0]]
    given = {"source": "s", "model": None} if cls is StreamOptions else {"model": None} if cls is ServeOptions else {}
    assert from_args(cls, args, **given) == cls(**given)
    assert from_args(cls, args, **given).run.device == "auto"
    assert from_args(cls, args, **given).temporal == "on"


def test_device_auto_is_cuda_where_torch_sees_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """`translate` with no --device runs on CUDA when there is one, on the CPU otherwise."""
    from cyclestream.engine.backends import create_backend

    args = build_parser().parse_args(["translate", "a.mp4", "b.mp4"])
    assert args.device == "auto"
    assert resolve_device("auto", cuda_available=lambda: True) == "cuda"
    assert resolve_device("auto", cuda_available=lambda: False) == "cpu"
    assert resolve_device("cuda:1", cuda_available=lambda: False) == "cuda:1"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert create_backend("eager", args.device).device == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert create_backend("eager", args.device).device == torch.device("cuda")


def test_keywords_are_checked_by_name() -> None:
    from cyclestream.engine.jobs.options import TranslateOptions
    from cyclestream.engine.options import from_keywords

    options = from_keywords(TranslateOptions, {"crf": 20, "backend": "eager", "temporal": "off"})
    assert (options.encode.crf, options.run.backend, options.temporal) == (20, "eager", "off")
    with pytest.raises(OptionError, match="has no option quality"):
        from_keywords(TranslateOptions, {"quality": 3})
    with pytest.raises(OptionError, match=r"^EncodeOptions\.crf: must be between 0 and 63, got 99$"):
        from_keywords(TranslateOptions, {"crf": 99})
