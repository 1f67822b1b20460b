"""The trainer's options have one source: each field of the option groups is declared once, with its default
and help, and `train`/`distill`/`python -m cyclestream.trainer` generate their flags from it (a task's
defaults said from its declaration); each options class refuses a bad value in one line naming the field;
the command line and the library build the same options."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cyclestream.cli.flags import from_args
from cyclestream.cli.train import COMMAND_FIELDS, add_train_options, train_options, trainer_parser
from cyclestream.engine.options import (
    OptionError,
    Options,
    allowed,
    base_type,
    field_default,
    nested_options,
    options_fields,
)
from cyclestream.trainer.datasets.options import STYLE_NAMES, DemoClipOptions, EmojiDatasetOptions
from cyclestream.trainer.distill_options import DistillEvalOptions, DistillOptions
from cyclestream.trainer.evaluate_options import EvaluateOptions
from cyclestream.trainer.options import (
    DataOptions,
    ModelOptions,
    OptimOptions,
    TrainOptions,
    TrainRunOptions,
)
from cyclestream.trainer.tasks import TaskDefaults, declarations, default_texts, tasks_of

GROUPS = {f.name: nested_options(hint) for f, hint, _ in options_fields(TrainOptions)}
CLASSES = [*GROUPS.values(), DistillEvalOptions, EvaluateOptions, DemoClipOptions, EmojiDatasetOptions]


def parser_of(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_train_options(parser, command)
    return parser


def shown(command: str) -> list[tuple[dataclasses.Field[Any], Any]]:
    """(field, spec) of every field ``command`` has a flag for: of the TrainOptions groups it has, and
    distill's evaluation."""
    out = []
    for group, names in COMMAND_FIELDS[command].items():
        for f, _hint, spec in options_fields(GROUPS[group]):
            if spec.flag != "" and (names is None or f.name in names):
                out.append((f, spec))
    if command == "distill":
        out += [(f, spec) for f, _hint, spec in options_fields(DistillEvalOptions)]
    return out


@pytest.mark.parametrize("command", ["train", "distill", "python -m cyclestream.trainer"])
def test_every_flag_is_generated_from_its_one_field(command: str) -> None:
    name = command if command in COMMAND_FIELDS else "train"
    parser = trainer_parser("x") if command not in COMMAND_FIELDS else parser_of(command)
    by_dest: dict[str, list[argparse.Action]] = {}
    for action in parser._actions:
        by_dest.setdefault(action.dest, []).append(action)
    texts = default_texts(name)
    fields = shown(name)
    assert len(fields) > (40 if name == "train" else 30)
    for f, spec in fields:
        actions = by_dest.pop(f.name, [])
        assert len(actions) == 1, f"--{f.name}: {len(actions)} declarations"
        action = actions[0]
        assert getattr(action, "option", None) is not None, f"{f.name}: written by hand"
        assert action.default == field_default(f), f.name
        negative = bool(action.option_strings) and action.option_strings[0].startswith("--no-")
        expected = f"no {spec.help}" if negative else spec.help
        assert action.help is not None and action.help.startswith(expected), f.name
        if f.name in texts:  # decided by the task: said from the declarations
            assert action.default is None and action.help.endswith(f"(default {texts[f.name]})"), action.help
    # the rest: help, -q, and --model (the tasks of the registry; ModelOptions.model has no flag of its own)
    assert set(by_dest) <= {"help", "quiet", "model"}
    if name == "train":
        model = by_dest["model"][0]
        assert model.choices == [t.name for t in tasks_of("train")] and model.default == ModelOptions().model


def test_task_defaults_are_said_from_their_declarations() -> None:
    train, distill = default_texts("train"), default_texts("distill")
    assert train["load_size"].startswith("286; dcgan 64") and train["batch_size"].startswith("1; dcgan 128")
    assert "stargan 128" in train["load_size"] and "stargan and stylegan2 16" in train["batch_size"]
    assert train["lr"] == "0.0002; stargan 0.0001; style 0.001; stylegan2 0.002"
    assert train["beta1"] == "0.5; style 0.9; stylegan2 0.0"
    assert train["norm"] == "instance; pix2pix and dcgan batch" and train["dropout"] == "off; pix2pix and bicyclegan on"
    assert train["n_blocks"].startswith("9; pix2pix log2 of the crop, 5 to 8; dcgan and stylegan2 0")
    assert "stargan 6" in train["n_blocks"]
    assert train["nz"] == "100; bicyclegan 8" and train["lambda_l1"] == "100.0; bicyclegan 10.0"
    assert (distill["ngf"], distill["n_blocks"], distill["epochs"]) == ("16", "4", "10")
    assert set(train) == {f.name for f in dataclasses.fields(TaskDefaults)}


@pytest.mark.parametrize("name", list(declarations()))
def test_resolving_fills_each_task_decided_field_from_the_task(name: str) -> None:
    crop = 64
    opts = TrainOptions(data=DataOptions(data=Path("d"), data_a=Path("a"), data_b=Path("b"), crop_size=crop),
                        model=ModelOptions(model=name), distill=DistillOptions(teacher=Path("t.pth")))
    resolved = opts.resolved()
    recipe = declarations()[name].defaults
    for f in dataclasses.fields(TaskDefaults):
        if f.name in ("load_size", "crop_size"):  # given: the crop; the load follows it (below)
            continue
        group = next(g for g in (resolved.data, resolved.model, resolved.optim) if hasattr(g, f.name))
        assert getattr(group, f.name) == recipe.value(f.name, crop), f"{name}: {f.name}"
    assert resolved.data.load_size == round(crop * recipe.load_size / recipe.crop_size)  # the recipe's ratio


def bad_values(cls: type[Options]) -> list[tuple[str, Any]]:
    """(field, a value its declaration refuses): a range's outside, a choice that is none, a wrong type."""
    out: list[tuple[str, Any]] = []
    for f, hint, spec in options_fields(cls):
        if nested_options(hint) is not None:
            continue
        if spec.min is not None:
            out.append((f.name, spec.min - 1))
        elif spec.above is not None:
            out.append((f.name, spec.above))
        elif spec.max is not None:
            out.append((f.name, spec.max + 1))
        elif allowed(hint, spec):
            out.append((f.name, "no-such-choice"))
        elif base_type(hint) in (int, float, bool):
            out.append((f.name, "x"))
    return out


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_a_bad_value_is_refused_in_one_line_naming_the_field(cls: type[Options]) -> None:
    cases = bad_values(cls) + {
        OptimOptions: [("lr", -1), ("beta1", 1.0)],
        ModelOptions: [("model", "stylegan")],
        DistillEvalOptions: [("eval_backends", ("eager", "nope"))],
        EmojiDatasetOptions: [("size", "big")],
    }.get(cls, [])
    assert cases, cls.__name__
    for name, value in cases:
        with pytest.raises(OptionError) as e:
            cls(**{name: value})
        message = str(e.value)
        assert message.startswith(f"{cls.__name__}.{name}: ") and "\n" not in message, message


def test_options_are_frozen_and_keyword_only() -> None:
    for cls in CLASSES:
        with pytest.raises(TypeError):
            cls(None)  # type: ignore[misc]
        with pytest.raises(dataclasses.FrozenInstanceError):
            cls().__setattr__(dataclasses.fields(cls)[0].name, None)


def test_a_task_declaration_with_a_bad_default_is_refused() -> None:
    recipe = dataclasses.asdict(declarations()["cyclegan"].defaults)
    with pytest.raises(OptionError, match=r"^TaskDefaults\.norm \(for ModelOptions\.norm\): must be one of"):
        TaskDefaults(**{**recipe, "norm": "group"}).check()
    with pytest.raises(OptionError, match=r"^TaskDefaults\.batch_size \(for OptimOptions\.batch_size\): must be"):
        TaskDefaults(**{**recipe, "batch_size": 0}).check()
    with pytest.raises(OptionError, match=r"^TaskDefaults\.load_size: 200 is smaller than crop_size 256"):
        TaskDefaults(**{**recipe, "load_size": 200}).check()


def test_command_line_and_library_defaults_agree(tmp_path: Path) -> None:
    out, data, teacher = tmp_path / "run", tmp_path / "data", tmp_path / "t.pth"
    train = train_options(parser_of("train").parse_args(["--out", str(out)]))
    assert train == TrainOptions(run=TrainRunOptions(out=out))
    distill = train_options(parser_of("distill").parse_args([str(teacher), "--data", str(data), "--out", str(out)]),
                            "distill")
    assert distill == TrainOptions(data=DataOptions(data=data), model=ModelOptions(model="distill"),
                                   run=TrainRunOptions(out=out), distill=DistillOptions(teacher=teacher))
    evaluation = from_args(DistillEvalOptions, parser_of("distill").parse_args([str(teacher), "--data", str(data),
                                                                                 "--out", str(out)]))
    assert evaluation == DistillEvalOptions()
    from cyclestream.cli import build_parser

    for argv, cls in ([["data", "emoji", "--out", "x"], EmojiDatasetOptions], [["data", "demo-clip"], DemoClipOptions],
                      [["evaluate", "m.pth", "--data", "d"], EvaluateOptions]):
        assert from_args(cls, build_parser().parse_args(argv)) == cls(), argv


def test_flags_reach_the_options(tmp_path: Path) -> None:
    args = parser_of("distill").parse_args(["t.pth", "--data", "d", "--out", "o", "--ngf", "8", "--no-flip",
                                            "--arch", "resnet", "--no-eval", "--eval-backends", "eager,openvino"])
    opts = train_options(args, "distill")
    assert (opts.model.ngf, opts.data.flip, opts.distill.arch, opts.distill.teacher) == (8, False, "resnet",
                                                                                        Path("t.pth"))
    assert from_args(DistillEvalOptions, args) == DistillEvalOptions(eval=False, eval_backends=("eager", "openvino"))
    with pytest.raises(SystemExit):
        parser_of("train").parse_args(["--out", "o", "--lr", "-1"])  # refused by the field's range, before training


def test_declarations_and_flags_import_no_torch() -> None:
    code = ("import sys; from cyclestream.cli import train; import argparse; "
            "[train.add_train_options(argparse.ArgumentParser(), c) for c in ('train', 'distill')]; "
            "from cyclestream.trainer.tasks import declarations; declarations(); "
            "import cyclestream.trainer.datasets.options, cyclestream.trainer.options; "
            "heavy = [m for m in ('torch', 'av', 'PIL') if m in sys.modules]; assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_style_names_are_the_drawn_styles() -> None:
    from cyclestream.trainer.datasets.emoji import STYLES

    assert tuple(STYLES) == STYLE_NAMES


def test_a_new_task_module_is_found_without_editing_a_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A task declares itself in a ``*_options`` module of the trainer package: nothing else lists it."""
    import cyclestream.trainer as package

    (tmp_path / "toy_options.py").write_text(
        "from cyclestream.trainer.cyclegan_options import TASK as CYCLEGAN\n"
        "import dataclasses\n"
        "TASK = dataclasses.replace(CYCLEGAN, name='toy', order=99, help='a toy task')\n"
    )
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(tmp_path)])
    declarations.cache_clear()
    try:
        assert list(declarations())[-1] == "toy" and declarations()["toy"].help == "a toy task"
    finally:
        monkeypatch.undo()
        sys.modules.pop("cyclestream.trainer.toy_options", None)
        declarations.cache_clear()
    assert "toy" not in declarations()
