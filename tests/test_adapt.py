"""Adapting the model to a library's own material (`core.adapt`): batch-norm statistics measured
on the library's windows, every weight kept; the library embeds with the adapted model, which
other readers of the folder pick up, and goes back to the base model on request."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sheetaudio_gui.core import adapt, index
from sheetaudio_gui.core.adapt import AdaptationSample, adapt_batch_norm
from sheetaudio_gui.core.errors import SheetAudioError
from sheetaudio_gui.core.index import Library
from sheetaudio_gui.core.jobs import run_to_end
from sheetaudio_gui.core.models import (
    LoadedModel,
    PassageModel,
    load_model,
    save_model,
    sheet_input,
)
from sheetaudio_gui.core.search import rank_recordings

SR = 22050


def sample(n: int = 600, seed: int = 0) -> AdaptationSample:
    rng = np.random.default_rng(seed)
    sheet = rng.integers(100, 200, size=(n, 80, 90)).astype(np.uint8)  # grey, unlike paper
    audio = rng.normal(3.0, 2.0, size=(n, 92, 20)).astype(np.float32)
    return AdaptationSample(sheet, audio, scores=3, recordings=2)


def test_adaptation_measures_the_first_layers_statistics_on_the_sample_and_keeps_the_weights():
    torch.manual_seed(0)
    model = PassageModel().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    s = sample()
    adapted = adapt_batch_norm(model, s)
    first_sheet = adapted.sheet_cnn.features[0]  # normalises the input pixels
    first_audio = adapted.audio_cnn.features[0]
    ink = sheet_input(s.sheet)  # what the CNN sees: ink in [0, 1]
    assert first_sheet.running_mean.item() == pytest.approx(ink.mean().item(), abs=1e-3)
    assert first_sheet.running_var.item() == pytest.approx(ink.var().item(), rel=0.02)
    assert first_audio.running_mean.item() == pytest.approx(3.0, abs=0.05)
    assert first_audio.running_var.item() == pytest.approx(4.0, rel=0.05)
    for name, value in adapted.state_dict().items():  # weights as trained; only statistics move
        if "running" not in name and "num_batches" not in name:
            assert torch.equal(value, before[name]), name
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # a copy
    assert not adapted.training and not any(m.training for m in adapted.modules())


def test_a_library_too_small_to_adapt_to_says_so():
    with pytest.raises(SheetAudioError, match="too little material"):
        adapt_batch_norm(PassageModel().eval(), sample(n=50))


def tune(path: Path, seconds: float, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    notes = 220.0 * 2 ** (rng.integers(0, 24, size=int(seconds * 3)) / 12)
    f = np.repeat(notes, len(t) // len(notes) + 1)[: len(t)]
    sf.write(path, (0.3 * np.sin(2 * np.pi * np.cumsum(f) / SR)).astype(np.float32), SR)
    return path


@pytest.fixture
def base(tmp_path: Path) -> LoadedModel:
    torch.manual_seed(0)
    save_model(PassageModel(), tmp_path / "base.pt")
    return load_model(tmp_path / "base.pt")


def test_a_library_adapts_re_embeds_and_goes_back(tmp_path, base, engraved_pdf, monkeypatch):
    monkeypatch.setattr(adapt, "ADAPT_MIN_WINDOWS", 10)  # the test score has 12 windows
    monkeypatch.setattr(index, "ADAPT_WINDOWS", 12)  # a library this size is worth adapting
    recordings = [tune(tmp_path / f"t{i}.wav", 30.0, seed=i) for i in range(2)]
    with Library(tmp_path / "lib", base) as lib:
        assert not lib.adaptation_advised()  # empty
        run_to_end(lib.add([engraved_pdf]))
        assert lib.adaptation_material() == (12, 0)
        assert not lib.adaptation_advised()  # no recordings yet
        run_to_end(lib.add(recordings))
        windows, snippets = lib.adaptation_material()
        assert windows == 12 and snippets == pytest.approx(60.0 / 0.9, abs=2)
        assert lib.adaptation_advised()
        report = run_to_end(lib.adapt())
        assert not lib.adaptation_advised()  # adapted already
        assert sorted(report.added) == sorted([engraved_pdf, *recordings])
        adapted_id = lib.model.model_id
        assert adapted_id != base.model_id
        assert lib.model.info["adapted_from"] == base.model_id
        assert lib.model.info["scores"] == 1 and lib.model.info["recordings"] == 2
        assert {d.state for d in lib.documents()} == {"indexed"}
        query = lib.audio_rows().passages[:1].float().numpy()  # a stored passage finds itself
        assert Path(rank_recordings(lib, query, 1)[0].document).name == "t0.wav"
    with Library(tmp_path / "lib", base) as other:  # another reader of the folder
        assert other.model.model_id == adapted_id
        assert {d.state for d in other.documents()} == {"indexed"}
        run_to_end(other.unadapt())
        assert other.model.model_id == base.model_id
        assert other.adaptation_advised()  # offered again
        assert {d.state for d in other.documents()} == {"indexed"}
    assert not (tmp_path / "lib" / "adapted-model.pt").exists()


def test_an_adapted_model_of_another_base_is_not_used(tmp_path, base):
    torch.manual_seed(1)
    other = PassageModel()
    save_model(other, tmp_path / "lib" / "adapted-model.pt", {"adapted_from": "someone-else"})
    with Library(tmp_path / "lib", base) as lib:
        assert lib.model.model_id == base.model_id
