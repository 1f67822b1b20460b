"""An interrupted and resumed run ends with the same bits as an uninterrupted one: CycleGAN (data order,
crops, image pools), pix2pix (dropout: the global RNG) and DCGAN (noise: the global RNG)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from cyclestream.engine.checkpoint import load_model
from cyclestream.engine.errors import CycleStreamError
from cyclestream.trainer.loop import train
from cyclestream.trainer.options import TrainOptions
from cyclestream.trainer.state import load_state
from tests.trainer.helpers import Killed, assert_same_runs, kill_at


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
    assert_same_runs(reference, result.run_dir)


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
    assert_same_runs(reference, result.run_dir)


@pytest.mark.parametrize("system", ["pix2pix", "dcgan"])
def test_resume_replays_dropout_and_noise(system: str, tiny_pix2pix: Callable[..., TrainOptions],
                                          tiny_dcgan: Callable[..., TrainOptions]) -> None:
    # pix2pix's U-Net draws dropout masks and DCGAN draws its noise from the global torch RNG, so a
    # resumed run is bit for bit only if every RNG state is saved and restored.  9 iterations (3 epochs
    # of 3) straight against 4 + 5: stopped by --max-iters one batch into epoch 2.
    make = tiny_pix2pix if system == "pix2pix" else tiny_dcgan
    sizes = {"epochs": 2, "epochs_decay": 1} if system == "pix2pix" else {"epochs": 3, "batch_size": 3}
    straight = train(make("straight", **sizes))
    assert straight.finished and straight.position.iteration == 9
    if system == "pix2pix":  # the official U-Net has dropout only in the levels past its outer 5
        spec = load_model(straight.run_dir / "G.safetensors").spec
        assert spec.use_dropout and spec.n_blocks > 5
    stopped = train(make("split", max_iters=4, **sizes))
    assert not stopped.finished and stopped.position.iteration == 4
    resumed = train(make("split", resume=True, **sizes))
    assert resumed.finished
    assert_same_runs(straight.run_dir, resumed.run_dir)


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
        if not hasattr(f, "write"):  # a model file (latest_net_G_A.pth), not the training state
            real_save(obj, f)  # type: ignore[arg-type]
            return
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
