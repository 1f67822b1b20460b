"""An interrupted and resumed run ends with the same bits as an uninterrupted one."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from cyclestream.engine.errors import CycleStreamError
from cyclestream.trainer.loop import train
from cyclestream.trainer.options import TrainOptions
from cyclestream.trainer.state import load_state


class Killed(Exception):
    """Stands for a kill -9 between two checkpoints."""


def kill_at(iteration: int) -> Callable[[int], None]:
    def hook(n: int) -> None:
        if n == iteration:
            raise Killed

    return hook


def _assert_same(a: object, b: object, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {set(a) ^ set(b)}"
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where  # type: ignore[arg-type]
        for i, (x, y) in enumerate(zip(a, b, strict=True)):  # type: ignore[call-overload]
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _losses(run_dir: Path) -> list[dict[str, float]]:
    lines = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in e.items() if k != "seconds"} for e in lines]


def _compare_runs(reference: Path, resumed: Path) -> None:
    ref, res = load_state(reference / "state.pt"), load_state(resumed / "state.pt")
    _assert_same(ref["task"], res["task"], "task")
    _assert_same(ref["ranks"], res["ranks"], "ranks")
    assert ref["position"] == res["position"]
    for name in ("G_A.safetensors", "G_B.safetensors"):
        assert (reference / name).read_bytes() != b""
    from safetensors.torch import load_file

    _assert_same(load_file(reference / "G_A.safetensors"), load_file(resumed / "G_A.safetensors"), "G_A")
    assert _losses(reference) == _losses(resumed)


@pytest.fixture
def reference(tiny: Callable[..., TrainOptions]) -> Path:
    result = train(tiny("reference"))
    assert result.finished and result.position.iteration == 18
    return result.run_dir


def test_resume_at_epoch_boundary_is_bit_identical(tiny: Callable[..., TrainOptions], reference: Path) -> None:
    # Killed in epoch 2 (iteration 8), before any mid-epoch checkpoint: resumes from the end of epoch 1.
    with pytest.raises(Killed):
        train(tiny("killed"), on_iteration=kill_at(8))
    assert load_state(reference.parent / "killed" / "state.pt")["position"] == {
        "epoch": 1, "epoch_iter": 0, "iteration": 6}
    result = train(tiny("killed", resume=True))
    assert result.finished
    _compare_runs(reference, result.run_dir)


def test_resume_mid_epoch_is_bit_identical(tiny: Callable[..., TrainOptions], reference: Path) -> None:
    # Checkpoints every 4 iterations; killed at 11, so it resumes at iteration 8 = epoch 2, batch 2,
    # and must replay the rest of epoch 2's data order, crops and pool draws exactly.
    with pytest.raises(Killed):
        train(tiny("killed", save_every_iters=4), on_iteration=kill_at(11))
    saved = load_state(reference.parent / "killed" / "state.pt")
    assert saved["position"] == {"epoch": 1, "epoch_iter": 2, "iteration": 8}
    # A stop by --max-iters is a checkpoint too; resume twice to cross it.
    train(tiny("killed", resume=True, save_every_iters=4, max_iters=13))
    result = train(tiny("killed", resume=True, save_every_iters=4))
    assert result.finished
    _compare_runs(reference, result.run_dir)


def test_resume_refuses_mismatches(tiny: Callable[..., TrainOptions], tmp_path: Path) -> None:
    with pytest.raises(CycleStreamError, match="nothing to resume"):
        train(tiny("fresh", resume=True))
    train(tiny("short", epochs=1, epochs_decay=0))
    with pytest.raises(CycleStreamError, match="already holds a training run"):
        train(tiny("short", epochs=1, epochs_decay=0))
    with pytest.raises(CycleStreamError, match=r"model\.ngf"):
        train(tiny("short", epochs=1, epochs_decay=0, ngf=8, resume=True))
    done = train(tiny("short", epochs=1, epochs_decay=0, resume=True, threads=2))
    assert done.finished and done.position.iteration == 6


def test_damaged_state_is_a_clear_error(tiny: Callable[..., TrainOptions]) -> None:
    result = train(tiny("run", epochs=1, epochs_decay=0))
    (result.run_dir / "state.pt").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CycleStreamError, match="not a readable training state"):
        train(tiny("run", epochs=1, epochs_decay=0, resume=True))


def test_kill_while_checkpointing_keeps_the_last_good_state(
    tiny: Callable[..., TrainOptions], monkeypatch: pytest.MonkeyPatch
) -> None:
    import cyclestream.trainer.state as state_module

    real_save = torch.save
    calls = {"n": 0}

    def dying_save(obj: object, f: object) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint dies half-way through writing
            f.write(b"PK\x03\x04half a file")  # type: ignore[attr-defined]
            raise Killed
        real_save(obj, f)  # type: ignore[arg-type]

    monkeypatch.setattr(state_module.torch, "save", dying_save)
    with pytest.raises(Killed):
        train(tiny("run", save_every_iters=3))
    run = tiny("run").run.out
    assert load_state(run / "state.pt")["position"] == {"epoch": 0, "epoch_iter": 3, "iteration": 3}
    assert not [p.name for p in run.iterdir() if "partial" in p.name]
    monkeypatch.setattr(state_module.torch, "save", real_save)
    assert train(tiny("run", save_every_iters=3, resume=True)).finished
