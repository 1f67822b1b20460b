"""CycleGAN training: it learns, writes its outputs, and its model files are what translate loads."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from cyclestream.engine.checkpoint import load_model
from cyclestream.engine.models import GeneratorSpec, build_generator
from cyclestream.trainer.loop import train
from cyclestream.trainer.losses import GANLoss, ImagePool
from cyclestream.trainer.networks import NLayerDiscriminator
from cyclestream.trainer.options import TrainingError, TrainOptions
from cyclestream.trainer.plot import read_log
from cyclestream.trainer.state import load_state
from cyclestream.trainer.task import linear_decay
from tests.engine.official_networks import ResnetGenerator, get_norm_layer


def test_cycle_loss_falls_on_an_easy_pair(tiny: Callable[..., TrainOptions], tmp_path: Path, draw: Any) -> None:
    a, b = draw.squares(tmp_path / "sqA", 8), draw.squares(tmp_path / "sqB", 8, inverted=True)
    result = train(tiny("learn", data_a=a, data_b=b, load_size=18, ngf=8, ndf=8, epochs=4, epochs_decay=0,
                        pool_size=50, samples=0))
    entries = read_log(result.run_dir / "log.jsonl")
    assert len(entries) == 32
    for e in entries:
        assert all(math.isfinite(v) for v in e.values())
    cycle = [e["cycle_A"] + e["cycle_B"] for e in entries]
    first, last = sum(cycle[:8]) / 8, sum(cycle[-8:]) / 8
    assert last < 0.85 * first, (first, last)


def test_run_folder_contents(tiny: Callable[..., TrainOptions]) -> None:
    result = train(tiny("run", save_every_iters=4))
    run = result.run_dir
    assert result.finished and result.position.iteration == 18
    names = {p.relative_to(run).as_posix() for p in run.rglob("*")}
    assert names == {"G_A.safetensors", "G_B.safetensors", "latest_net_G_A.pth", "latest_net_G_B.pth", "state.pt",
                     "log.jsonl", "losses.png", "options.json", "samples", "samples/epoch_001.png",
                     "samples/epoch_002.png", "samples/epoch_003.png"}  # fmt: skip
    entries = read_log(run / "log.jsonl")
    assert [e["iteration"] for e in entries] == list(range(1, 19))
    assert {"D_A", "G_A", "cycle_A", "idt_A", "D_B", "G_B", "cycle_B", "idt_B", "lr"} <= set(entries[0])
    # Linear decay after 2 epochs over 1: epochs 1-2 at 2e-4, epoch 3 at 1e-4.
    assert [entries[i]["lr"] for i in (0, 11, 12)] == pytest.approx([2e-4, 2e-4, 1e-4])
    grid = Image.open(run / "samples" / "epoch_003.png")
    assert grid.mode == "RGB" and grid.size == (3 * 96 + 2 * 2, 4 * 96 + 3 * 2)  # 3 columns, 2 + 2 rows of 16→96 px
    assert Image.open(run / "losses.png").size == (960, 540)
    assert json.loads((run / "options.json").read_text())["model"]["ngf"] == 4


def test_saved_generator_is_the_trained_module(tiny: Callable[..., TrainOptions]) -> None:
    run = train(tiny("run", epochs=1, epochs_decay=0)).run_dir
    trained = build_generator(GeneratorSpec(ngf=4, n_blocks=1))
    trained.load_state_dict(load_state(run / "state.pt")["task"]["nets"]["G_A"])
    loaded = load_model(run / "G_A.safetensors")
    assert loaded.format == "cyclestream" and loaded.spec == GeneratorSpec(ngf=4, n_blocks=1)
    meta = loaded.metadata
    assert meta["domains"] == {"A": "A", "B": "B"} and meta["direction"] == "A -> B"
    assert meta["epoch"] == 1 and meta["iterations"] == 6 and meta["training"]["model"]["n_blocks"] == 1
    x = torch.rand(1, 3, 20, 24) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded.generator(x), trained.eval()(x))
    assert load_model(run / "G_B.safetensors").metadata["direction"] == "B -> A"
    # the official code's files of the same weights: its define_G (resnet, ngf 4, 1 block) loads them strictly
    for net in ("G_A", "G_B"):
        official = ResnetGenerator(3, 3, ngf=4, norm_layer=get_norm_layer("instance"), n_blocks=1)
        official.load_state_dict(torch.load(run / f"latest_net_{net}.pth", weights_only=True))
        with torch.no_grad():
            assert torch.equal(official.eval()(x), load_model(run / f"{net}.safetensors").generator(x))


def test_dataroot_and_domain_names(tmp_path: Path, tiny: Callable[..., TrainOptions],
                                   unpaired: tuple[Path, Path]) -> None:
    root = tmp_path / "apple2orange"
    root.mkdir()
    unpaired[0].rename(root / "trainA")
    unpaired[1].rename(root / "trainB")
    run = train(tiny("run", data_a=None, data_b=None, dataroot=root, epochs=1, epochs_decay=0)).run_dir
    assert load_model(run / "G_A.safetensors").metadata["direction"] == "apple -> orange"
    with pytest.raises(TrainingError, match="no trainA"):
        train(tiny("other", data_a=None, data_b=None, dataroot=tmp_path, epochs=1, epochs_decay=0))


def test_patchgan_has_the_official_layout() -> None:
    d = NLayerDiscriminator(3, 64, 3, "instance")
    keys = {k: tuple(v.shape) for k, v in d.state_dict().items()}
    assert keys == {
        "model.0.weight": (64, 3, 4, 4), "model.0.bias": (64,),
        "model.2.weight": (128, 64, 4, 4), "model.2.bias": (128,),
        "model.5.weight": (256, 128, 4, 4), "model.5.bias": (256,),
        "model.8.weight": (512, 256, 4, 4), "model.8.bias": (512,),
        "model.11.weight": (1, 512, 4, 4), "model.11.bias": (1,),
    }
    assert sum(p.numel() for p in d.parameters()) == 2_764_737  # the official "2.765 M"
    assert d(torch.zeros(1, 3, 256, 256)).shape == (1, 1, 30, 30)  # 70×70 receptive field patches


def test_image_pool_and_losses() -> None:
    pool = ImagePool(2, seed=0)
    images = [torch.full((1, 1, 2, 2), float(i)) for i in range(40)]
    out = [pool.query(x) for x in images]
    assert torch.equal(out[0], images[0]) and torch.equal(out[1], images[1])  # filling: returned as is
    returned_old = sum(not torch.equal(o, x) for o, x in zip(out[2:], images[2:], strict=True))
    assert 8 < returned_old < 32  # about half the time once full
    assert ImagePool(0, seed=0).query(images[3]) is images[3]
    pred = torch.tensor([[0.5, 1.5]])
    assert GANLoss("lsgan")(pred, True).item() == pytest.approx(0.25)
    assert GANLoss("vanilla")(torch.zeros(3), False).item() == pytest.approx(math.log(2))


def test_linear_decay_is_the_official_rule() -> None:
    rule = linear_decay(100, 100)
    assert [rule(e) for e in (0, 99, 100, 199)] == pytest.approx([1.0, 1.0, 1 - 1 / 101, 1 - 100 / 101])


def test_bad_options_are_clear(tiny: Callable[..., TrainOptions]) -> None:
    with pytest.raises(TrainingError, match="multiple of 4"):
        train(tiny(crop_size=18))
    with pytest.raises(TrainingError, match="too small for a 3-layer PatchGAN"):
        train(tiny(n_layers_d=3))
    with pytest.raises(TrainingError, match="smaller than --crop-size"):
        train(tiny(load_size=12))
    with pytest.raises(TrainingError, match=r"--precision fp16 needs a CUDA device \(training on cpu\)"):
        train(tiny(precision="fp16"))
    with pytest.raises(TrainingError, match="--device cuda0: expected auto"):
        train(tiny(device="cuda0"))


def test_grayscale_rgba_and_mixed_sizes_train(tiny: Callable[..., TrainOptions], tmp_path: Path) -> None:
    a, b = tmp_path / "mixA", tmp_path / "mixB"
    a.mkdir()
    b.mkdir()
    Image.new("L", (30, 17), 90).save(a / "gray.png")
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[10:30, 10:30] = (255, 0, 0, 255)
    Image.fromarray(rgba, "RGBA").save(a / "emoji.png")
    Image.new("P", (21, 21), 3).save(b / "palette.gif")
    Image.new("RGB", (64, 48), (0, 200, 0)).save(b / "big.jpg")
    (b / "notes.txt").write_text("not an image, ignored")
    result = train(tiny("mixed", data_a=a, data_b=b, epochs=1, epochs_decay=0))
    assert result.position.iteration == 2
    from cyclestream.trainer.data import UnalignedDataset, scan_images

    ds = UnalignedDataset(scan_images(a), scan_images(b), 20, 16, True)
    item = ds[(1, 0, 0)]
    assert item["A"].shape == item["B"].shape == (3, 16, 16)
    # Transparent pixels are composited onto white, as inference does.
    assert torch.allclose(ds.fixed(0)["A"][:, 0, 0], torch.ones(3))
