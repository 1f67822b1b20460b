"""Pre/post-processing: the official value mapping, padding to a multiple, exact crop back."""

from __future__ import annotations

import pytest
import torch

from cyclestream.engine.backends.tensors import Padding, from_model_output, to_model_input


@pytest.mark.parametrize(("h", "w", "multiple"), [(142, 250, 4), (7, 13, 4), (64, 64, 4), (100, 30, 128), (1, 1, 4)])
def test_pad_then_crop_is_identity(h: int, w: int, multiple: int) -> None:
    frames = torch.randint(0, 256, (2, h, w, 3), dtype=torch.uint8)
    x = to_model_input(frames, multiple)
    assert x.shape[2] % multiple == 0 and x.shape[3] % multiple == 0
    assert x.shape[2] - h < multiple and x.shape[3] - w < multiple
    assert torch.equal(from_model_output(x, h, w), frames)


def test_values_follow_the_official_mapping() -> None:
    frames = torch.tensor([[[[0, 127, 255]]]], dtype=torch.uint8)  # one pixel
    x = to_model_input(frames, 1)
    torch.testing.assert_close(x.flatten(), torch.tensor([-1.0, 127 / 127.5 - 1, 1.0]))


def test_output_is_rounded_and_clamped_not_truncated() -> None:
    y = torch.tensor([-1.5, -1.0, 0.0, 0.999, 2.0, 1.0 - 1 / 255]).view(1, 1, 1, 6).expand(1, 3, 1, 6)
    out = from_model_output(y.contiguous(), 1, 6)[0, 0, :, 0]
    # (y + 1) * 127.5: -63.75→0, 0, 127.5→128 (round half to even gives 128), 254.87→255, 382→255, 254.5→254
    assert out.tolist() == [0, 0, 128, 255, 255, 254]


def test_padding_is_reflective_and_symmetric() -> None:
    pad = Padding.to_multiple(142, 250, 4)
    assert (pad.top, pad.bottom, pad.left, pad.right) == (1, 1, 1, 1)
    frames = torch.randint(0, 256, (1, 5, 6, 3), dtype=torch.uint8)
    x = to_model_input(frames, 4)  # 5x6 → 8x8: rows pad (1, 2), columns (1, 1)
    assert x.shape[2:] == (8, 8)
    torch.testing.assert_close(x[0, :, 0, 1:7], x[0, :, 2, 1:7])  # reflection about row 1


def test_rejects_non_rgb_uint8() -> None:
    with pytest.raises(ValueError, match="uint8"):
        to_model_input(torch.zeros(1, 4, 4, 3), 4)


@pytest.mark.parametrize("size", [(36, 44), (37, 45)])
def test_nchw_model_input_equals_the_channels_last_one_and_needs_no_copy(size: tuple[int, int]) -> None:
    frames = torch.randint(0, 256, (2, *size, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    nhwc = to_model_input(frames, 4)
    nchw = to_model_input(frames, 4, channels_last=False)
    assert torch.equal(nhwc, nchw)
    assert nchw.is_contiguous()  # what ONNX Runtime / OpenVINO / TensorRT bindings take, with no float copy
    assert nhwc.is_contiguous(memory_format=torch.channels_last)
