"""The training tasks (model systems) by name: what each one is, which command trains it, and its recipe.

A task declares itself in a small module of its own (``cyclegan_options.py`` beside ``cyclegan.py``):
a :class:`TaskDeclaration` with its :class:`TaskDefaults`, the values its options take where the user
gave none (the official recipe of that model).  The declarations are found, not listed: every module
of this package whose name ends in ``_options`` and that defines ``TASK`` (ordered by its ``order``),
so a new task edits no other file.  They and this module import no torch, so ``cyclestream train
--help`` reads every recipe (its "(default 286; dcgan 64)" texts are generated from them) and the
task's own module is imported only to train.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from cyclestream.trainer.options import TrainOptions
    from cyclestream.trainer.task import Runtime, Task


Norm = Literal["instance", "batch"]
GanMode = Literal["lsgan", "vanilla"]
Command = Literal["train", "distill"]
BlocksRule = Callable[[int], int]  # the crop side → generator blocks; its docstring's first line is its --help text


@dataclass(frozen=True, kw_only=True)
class TaskDefaults:
    """A task's recipe: the value of each option that its task decides (a field of the same name, None by
    default, in ``DataOptions``, ``ModelOptions`` or ``OptimOptions``)."""

    load_size: int
    crop_size: int
    ngf: int
    n_blocks: int | BlocksRule
    norm: Norm
    dropout: bool
    gan_mode: GanMode
    pool_size: int
    epochs: int
    epochs_decay: int
    batch_size: int
    lr: float = 2e-4  # Adam's, as the pytorch-CycleGAN-and-pix2pix recipe has it unless a task says otherwise
    beta1: float = 0.5
    beta2: float = 0.999
    lambda_l1: float = 100.0  # pix2pix's
    nz: int = 100  # DCGAN's

    def check(self) -> None:
        """Each value against the declaration of the option it fills (type, choices, range); an OptionError
        naming both.  The registry runs it when it loads a declaration (not on construction: the option
        classes it checks against import this module)."""
        from cyclestream.engine.options import OptionError, coerce, options_fields
        from cyclestream.trainer.options import TASK_GROUPS

        declared = {f.name: (group, hint, spec) for group in TASK_GROUPS for f, hint, spec in options_fields(group)}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            group, hint, spec = declared[f.name]
            if callable(value):
                continue
            try:
                coerce(value, hint, spec)
            except OptionError as e:
                raise OptionError(f"TaskDefaults.{f.name} (for {group.__name__}.{f.name}): {e}") from None
        if self.load_size < self.crop_size:
            raise OptionError(f"TaskDefaults.load_size: {self.load_size} is smaller than crop_size {self.crop_size}")

    def value(self, name: str, crop_size: int) -> Any:
        """The default of option ``name`` for a run of this crop side."""
        value = getattr(self, name)
        return value(crop_size) if callable(value) else value


@dataclass(frozen=True, kw_only=True)
class TaskDeclaration:
    """One model system: ``name`` (``--model``'s value), one line of help, the class that trains it
    (``module:Class``, imported only to train), the command that trains it, its recipe, and its own checks
    of resolved options (its data, the sizes its networks need: a TrainingError naming the flag)."""

    name: str
    help: str
    task: str
    order: int  # where --model lists it; a command's first task is the one whose values --help says first
    command: Command = "train"
    defaults: TaskDefaults
    validate: Callable[[TrainOptions], None]

    def create(self, options: TrainOptions, runtime: Runtime) -> Task:
        module, _, cls = self.task.partition(":")
        task: Task = getattr(importlib.import_module(module), cls)(options, runtime)
        return task


def task_modules() -> list[str]:
    """The modules of this package that may declare a task (``*_options``)."""
    import pkgutil

    import cyclestream.trainer as package

    return [f"{package.__name__}.{m.name}" for m in pkgutil.iter_modules(package.__path__)
            if m.name.endswith("_options")]


@functools.cache
def declarations() -> dict[str, TaskDeclaration]:
    """Every task by name, in ``order`` (each declaring module's ``TASK``)."""
    modules = [importlib.import_module(name) for name in task_modules()]
    found = sorted((m.TASK for m in modules if isinstance(getattr(m, "TASK", None), TaskDeclaration)),
                   key=lambda task: (task.order, task.name))
    names = [task.name for task in found]
    if len(set(names)) != len(names):
        raise ValueError(f"two training tasks share a name: {sorted(names)}")
    for task in found:
        task.defaults.check()
    return {task.name: task for task in found}


def task_names() -> tuple[str, ...]:
    return tuple(declarations())


def tasks_of(command: str) -> list[TaskDeclaration]:
    """The tasks a command trains, in order."""
    return [task for task in declarations().values() if task.command == command]


def default_texts(command: str) -> dict[str, str]:
    """How --help says each task-decided default for ``command``: the first task's value, then the other
    tasks' where they differ (``286; dcgan 64``, ``instance; pix2pix and dcgan batch``)."""
    tasks = tasks_of(command)
    texts = {}
    for f in dataclasses.fields(TaskDefaults):
        said = [(task.name, _describe(getattr(task.defaults, f.name))) for task in tasks]
        first = said[0][1]
        others: dict[str, list[str]] = {}
        for name, text in said[1:]:
            if text != first:
                others.setdefault(text, []).append(name)
        texts[f.name] = "; ".join([first, *(f"{' and '.join(names)} {text}" for text, names in others.items())])
    return texts


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if callable(value):
        return (value.__doc__ or value.__name__).strip().splitlines()[0].rstrip(".")
    return str(value)
