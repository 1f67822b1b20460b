"""A model file that needs code to unpickle (an NVlabs StyleGAN ``network-snapshot.pkl`` is one) is refused
with one line naming the path, and nothing in it runs: the pickles here are written by hand the way an
attacker would, each with a ``__reduce__`` that would create a marker file when unpickled."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from cyclestream.cli import main
from cyclestream.engine.checkpoint import load_model
from cyclestream.engine.errors import CheckpointError


class _MakesMarker:
    """Unpickled, it would call ``open(marker, "w")``: the marker file appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def _snapshot(marker: Path) -> dict[str, object]:
    """The shape of an NVlabs snapshot: networks as objects beside plain values."""
    return {"G_ema": _MakesMarker(marker), "training_set_kwargs": {"resolution": 32}}


def _plain_pickle(path: Path, marker: Path) -> Path:
    path.write_bytes(pickle.dumps(_snapshot(marker), protocol=4))
    return path


def _torch_zip(path: Path, marker: Path) -> Path:
    torch.save(_snapshot(marker), path)
    return path


WRITERS = {"plain pickle": _plain_pickle, "torch.save zip": _torch_zip}


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_code_pickle_is_refused_and_runs_nothing(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "marker"
    path = WRITERS[kind](tmp_path / "network-snapshot-000100.pkl", marker)
    assert not marker.exists()  # writing it ran nothing either
    with pytest.raises(CheckpointError) as caught:
        load_model(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    assert "pickled Python objects" in message
    assert not marker.exists()


def test_cli_info_refuses_code_pickle_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "marker"
    path = _plain_pickle(tmp_path / "stylegan2-ffhq.pkl", marker)
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("cyclestream: error:") and str(path) in err
    assert not marker.exists()
