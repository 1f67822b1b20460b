"""``cyclestream distill``: a few iterations on tiny data, bit-identical resume, Ctrl-C, the student file
(loads, translates, names its teacher), the mobile architecture (fused kernels, ONNX backends) and the
evaluation it writes."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from cyclestream.cli import main
from cyclestream.engine.checkpoint import load_model
from cyclestream.engine.media.images import load_rgb
from cyclestream.engine.models import GeneratorSpec, MobileResnetBlock, build_generator
from cyclestream.engine.paths import file_sha256
from cyclestream.trainer.data import to_tensor
from cyclestream.trainer.distill import STUDENT_FILE, paired_layers
from cyclestream.trainer.distill_data import FRAMES_DIR, source_images
from cyclestream.trainer.distill_eval import fidelity, holdout_frames, was_trained_on
from cyclestream.trainer.loop import train
from cyclestream.trainer.options import (
    DataOptions,
    DistillOptions,
    ModelOptions,
    OptimOptions,
    TrainingError,
    TrainOptions,
)
from cyclestream.trainer.state import load_state
from tests.trainer.helpers import quiet_run


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random ResNet teacher in the official ``.pth`` layout (a plain state dict)."""
    torch.manual_seed(7)
    generator = build_generator(GeneratorSpec(ngf=8, n_blocks=3))
    path = tmp_path_factory.mktemp("teacher") / "latest_net_G.pth"
    torch.save(generator.state_dict(), path)
    return path


@pytest.fixture
def images(tmp_path: Path, draw: Any) -> Path:
    return draw.squares(tmp_path / "source", 6)


def options(out: Path, data: Path, teacher: Path, **run: object) -> TrainOptions:
    return TrainOptions(
        data=DataOptions(data=data, load_size=20, crop_size=16),
        model=ModelOptions(model="distill", ngf=4, n_blocks=2, ndf=4, n_layers_d=1),
        optim=OptimOptions(epochs=1, epochs_decay=1, batch_size=2),  # 3 iterations an epoch
        run=quiet_run(out, samples=2, **run),
        distill=DistillOptions(teacher=teacher, arch="mobile"),
    )


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def test_a_few_iterations_write_a_student_that_names_its_teacher(tmp_path: Path, images: Path,
                                                                 teacher: Path) -> None:
    result = train(options(tmp_path / "run", images, teacher, max_iters=2))
    assert not result.finished and result.position.iteration == 2
    student = load_model(tmp_path / "run" / STUDENT_FILE)
    assert student.spec.kind == "mobile" and student.spec.ngf == 4 and student.spec.n_blocks == 2
    d = student.metadata["distillation"]
    assert d["teacher"] == str(teacher) and d["teacher_sha256"] == file_sha256(teacher)
    assert d["teacher_architecture"] == "resnet_3blocks" and d["arch"] == "mobile"
    assert d["lambda_recon"] == 10.0 and d["feature_pairs"] == [[0, 1], [1, 2]]
    assert student.metadata["iterations"] == 2
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [e["iteration"] for e in log] == [1, 2]
    assert all(e["recon"] > 0 and e["feat"] > 0 and e["G_gan"] > 0 and e["D"] > 0 for e in log)


def test_the_student_learns_the_teacher(tmp_path: Path, images: Path, teacher: Path) -> None:
    """L1 to the teacher falls: the student is trained on the teacher's outputs, not on anything else."""
    opts = options(tmp_path / "run", images, teacher)
    opts = TrainOptions(data=opts.data, model=opts.model,
                        optim=OptimOptions(epochs=12, epochs_decay=0, batch_size=2, lr=2e-3), run=opts.run,
                        distill=DistillOptions(teacher=teacher, arch="mobile", lambda_gan=0.0, lambda_feat=0.0))
    train(opts)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    first, last = np.mean([e["recon"] for e in log[:3]]), np.mean([e["recon"] for e in log[-3:]])
    assert last < 0.8 * first
    student, source = load_model(tmp_path / "run" / STUDENT_FILE).generator, load_model(teacher).generator
    x = torch.stack([to_tensor(load_rgb(p)) for p in sorted(images.glob("*.png"))])
    with torch.no_grad():
        target = source(x)
        to_teacher, input_to_teacher = (student(x) - target).abs().mean(), (x - target).abs().mean()
    assert to_teacher < 0.6 * input_to_teacher  # it learnt the teacher's mapping, not the identity


def test_resume_is_bit_identical(tmp_path: Path, images: Path, teacher: Path) -> None:
    train(options(tmp_path / "straight", images, teacher))
    train(options(tmp_path / "split", images, teacher, max_iters=4))  # stops mid-epoch 2
    result = train(options(tmp_path / "split", images, teacher, resume=True))
    assert result.finished and result.position.iteration == 6
    a, b = weights(tmp_path / "straight" / STUDENT_FILE), weights(tmp_path / "split" / STUDENT_FILE)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = load_state(tmp_path / "straight" / "state.pt"), load_state(tmp_path / "split" / "state.pt")
    for net in ("student", "mappings", "D"):
        for key, value in sa["task"]["nets"][net].items():
            assert torch.equal(value, sb["task"]["nets"][net][key]), f"{net}.{key}"


def test_resume_refuses_another_teacher(tmp_path: Path, images: Path, teacher: Path) -> None:
    train(options(tmp_path / "run", images, teacher, max_iters=1))
    other = tmp_path / "other.pth"
    torch.save(build_generator(GeneratorSpec(ngf=8, n_blocks=3)).state_dict(), other)
    with pytest.raises(TrainingError, match=f"teacher {other} is not the model this run was distilled from"):
        train(options(tmp_path / "run", images, other, resume=True))


def test_ctrl_c_stops_after_the_iteration_with_a_checkpoint(tmp_path: Path, images: Path, teacher: Path) -> None:
    def interrupt(n: int) -> None:  # runs after iteration n: the Ctrl-C lands while iteration n + 1 is due
        if n == 1:
            os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)
    result = train(options(tmp_path / "run", images, teacher), interrupt, finish_on_interrupt=True)
    assert signal.getsignal(signal.SIGINT) is before
    assert not result.finished and result.position.iteration == 2
    assert load_model(tmp_path / "run" / STUDENT_FILE).metadata["iterations"] == 2
    assert load_state(tmp_path / "run" / "state.pt")["position"]["iteration"] == 2
    assert train(options(tmp_path / "run", images, teacher, resume=True)).position.iteration == 6


def test_the_student_translates_and_runs_on_every_cpu_backend(tmp_path: Path, images: Path, teacher: Path) -> None:
    train(options(tmp_path / "run", images, teacher, max_iters=1))
    student = tmp_path / "run" / STUDENT_FILE
    out = tmp_path / "out.png"
    assert main(["--quiet", "translate", str(images / "000.png"), str(out), "--model", str(student),
                 "--backend", "eager", "--no-preview"]) == 0
    assert out.exists()
    from cyclestream.engine.backends import FrameShape, create_backend

    model = load_model(student)
    frames = torch.from_numpy(np.stack([np.asarray(Image.open(images / "001.png").convert("RGB"))] * 2))
    outputs = {}
    for name in ("eager", "onnxruntime", "openvino"):
        pytest.importorskip(name if name != "eager" else "torch")
        backend = create_backend(name, "cpu")
        backend.prepare(model, FrameShape(2, 24, 24), "fp32")
        outputs[name] = backend.run(frames).numpy().astype(int)
        backend.close()
    for name, out_frames in outputs.items():
        assert np.abs(out_frames - outputs["eager"]).max() <= 1, name


def test_mobile_blocks_are_separable_and_take_the_fused_kernels() -> None:
    from cyclestream.engine.models.fuse import FusedResnetBlock, fuse_kernels

    spec = GeneratorSpec(kind="mobile", ngf=8, n_blocks=3)
    assert (spec.size_multiple, spec.min_side, spec.official_name) == (4, 5, "mobile_resnet_3blocks")
    torch.manual_seed(0)
    generator = build_generator(spec).eval()
    blocks = [m for m in generator.modules() if isinstance(m, MobileResnetBlock)]
    depthwise = [m for m in generator.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert len(blocks) == 3 and len(depthwise) == 6 and all(m.groups == 32 for m in depthwise)
    dense = build_generator(GeneratorSpec(ngf=8, n_blocks=3))
    assert sum(p.numel() for p in generator.parameters()) < sum(p.numel() for p in dense.parameters())
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        expected = generator(x)
        fused = fuse_kernels(generator, "reference")
        assert sum(isinstance(m, FusedResnetBlock) for m in fused.modules()) == 3
        assert torch.allclose(fused(x), expected, atol=1e-5)


def test_feature_pairs_are_evenly_spaced_and_end_at_the_last_blocks() -> None:
    assert paired_layers(4, 6, 4) == [(0, 1), (1, 2), (2, 3), (3, 5)]
    assert paired_layers(6, 6, 4) == [(0, 0), (2, 2), (3, 3), (5, 5)]  # the shipped student's
    assert paired_layers(6, 9, 2) == [(2, 3), (5, 8)]
    assert paired_layers(2, 6, 0) == []


def test_video_frames_are_distilled_too_and_held_out_is_checked(tmp_path: Path, images: Path) -> None:
    video = images / "clip.mp4"
    with av.open(str(video), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(9):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 20 * i, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    files = source_images(images, tmp_path / FRAMES_DIR)
    frames = [f for f in files if FRAMES_DIR in f.parts]
    assert [f.name for f in frames] == ["000000.png", "000004.png", "000008.png"] and len(files) == 6 + 3
    assert was_trained_on(video, images) and not was_trained_on(video, tmp_path / FRAMES_DIR)


def test_cli_distils_evaluates_and_reports(tmp_path: Path, images: Path, teacher: Path, draw: Any,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    holdout = draw.squares(tmp_path / "holdout", 2, size=32, seed=5)
    out = tmp_path / "run"
    argv = ["--quiet", "distill", str(teacher), "--data", str(images), "--out", str(out), "--ngf", "4",
            "--n-blocks", "1", "--ndf", "4", "--n-layers-d", "1", "--crop-size", "16", "--max-iters", "2",
            "--batch-size", "2", "--holdout", str(holdout), "--eval-backends", "eager", "--eval-seconds", "0.05"]
    assert main(argv) == 0
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["held_out"] and evaluation["fidelity"]["frames"] == 2
    assert 0 < evaluation["fidelity"]["psnr_db"] < 100 and -1 <= evaluation["fidelity"]["ssim"] <= 1
    assert evaluation["student_cost"]["architecture"] == "mobile_resnet_1blocks"
    assert evaluation["student_cost"]["macs_per_frame"] < evaluation["teacher_cost"]["macs_per_frame"]
    assert [r["backend"] for r in evaluation["speed"]] == ["eager"] and evaluation["speed"][0]["images_per_s"] > 0
    assert evaluation["official_resnet_9blocks_eager_fp32"]["images_per_s"] > 0
    text = capsys.readouterr().out
    assert "stopped" in text and "PSNR" in text and "held-out" in text and "official resnet_9blocks" in text


def test_fidelity_is_measured_on_both_models_outputs(teacher: Path) -> None:
    frames = holdout_frames(Path(__file__).resolve().parents[2] / "cyclestream" / "assets" / "demo.mp4", limit=2)
    assert len(frames) == 2 and frames[0].shape == (256, 256, 3)
    model = load_model(teacher)
    assert fidelity(model, model, frames)["psnr_db"] == 100.0  # the cap: identical outputs
    other = load_model(teacher)
    with torch.no_grad():
        other.generator.model[-2].weight.mul_(1.2)  # the output convolution: no norm after it
    score = fidelity(other, model, frames)
    assert 10 < score["psnr_db"] < 60 and 0.3 < score["ssim"] < 1


def test_init_starts_the_student_from_another_run(tmp_path: Path, images: Path, teacher: Path) -> None:
    train(options(tmp_path / "first", images, teacher, max_iters=2))
    first = tmp_path / "first" / STUDENT_FILE
    opts = options(tmp_path / "second", images, teacher, max_iters=1)
    still = OptimOptions(epochs=1, epochs_decay=1, batch_size=2, lr=1e-12)  # one step that changes ~nothing
    train(TrainOptions(data=opts.data, model=opts.model, optim=still, run=opts.run,
                       distill=DistillOptions(teacher=teacher, init=first)))
    a, b = weights(first), weights(tmp_path / "second" / STUDENT_FILE)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert load_model(tmp_path / "second" / STUDENT_FILE).metadata["distillation"]["init_sha256"] == file_sha256(first)
    wide = TrainOptions(data=opts.data, model=ModelOptions(model="distill", ngf=8, n_blocks=2, ndf=4, n_layers_d=1),
                        optim=still, run=quiet_run(tmp_path / "third"),
                        distill=DistillOptions(teacher=teacher, init=first))
    with pytest.raises(TrainingError, match=f"--init {first} is a mobile_resnet_2blocks \\(ngf 4\\)"):
        train(wide)


def test_missing_teacher_is_a_one_line_error(tmp_path: Path, images: Path) -> None:
    with pytest.raises(TrainingError, match=f"teacher {tmp_path / 'nope.pth'}: model file not found"):
        train(options(tmp_path / "run", images, tmp_path / "nope.pth"))



def test_bench_model_measures_a_student_against_the_official_generator(
        tmp_path: Path, images: Path, teacher: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train(options(tmp_path / "run", images, teacher, max_iters=1))
    report = tmp_path / "bench.json"
    assert main(["--quiet", "bench", "model", "--model", str(tmp_path / "run" / STUDENT_FILE), "--quick",
                 "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["model"]["architecture"] == "mobile_resnet_2blocks"
    ref = data["model"]["official_baseline"]["64x64"]
    best = max(r["images_per_s"] for r in data["rows"] if not r["skipped"])
    assert ref["images_per_s"] > 0 and ref["speedup"] == round(best / ref["images_per_s"], 1)
    assert "official resnet_9blocks, eager fp32 batch 1, 64x64" in capsys.readouterr().out


@pytest.mark.slow
def test_two_ddp_processes_distil_in_step(tmp_path: Path, images: Path, teacher: Path) -> None:
    opts = options(tmp_path / "run", images, teacher)
    result = train(TrainOptions(data=opts.data, model=opts.model,
                                optim=OptimOptions(epochs=1, epochs_decay=0, batch_size=1),
                                run=quiet_run(tmp_path / "run", samples=0, nproc=2), distill=opts.distill))
    assert result.finished and result.position.iteration == 3  # 6 images, 2 ranks, batch 1
    state = load_state(tmp_path / "run" / "state.pt")
    assert state["world_size"] == 2 and len(set(state["rank_digests"])) == 1 and len(state["rank_digests"]) == 2
    student = load_model(tmp_path / "run" / STUDENT_FILE)
    assert student.metadata["distillation"]["teacher_sha256"] == file_sha256(teacher)


ASSETS = Path(__file__).resolve().parents[2] / "cyclestream" / "assets"


@pytest.mark.slow
def test_the_shipped_student_is_distilled_from_the_bundled_model() -> None:
    student = load_model(ASSETS / "student_model.safetensors")
    d = student.metadata["distillation"]
    assert d["teacher_sha256"] == file_sha256(ASSETS / "default_model.safetensors")
    assert student.spec.kind == d["arch"] == "mobile" and student.metadata["input_domain"] == "openmoji"
    teacher = load_model(ASSETS / "default_model.safetensors")
    frames = holdout_frames(ASSETS / "demo.mp4", limit=4)
    assert fidelity(student, teacher, frames)["psnr_db"] > 25  # (28+ over all 72 frames: see the README)


def test_demo_student_translates_the_clip_with_the_student(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo.mp4"
    assert main(["demo", "--student", "--output", str(out), "--backend", "eager", "--size", "64x64",
                 "--no-preview", "--temporal", "off"]) == 0
    assert out.exists() and "with student_model.safetensors" in capsys.readouterr().out
