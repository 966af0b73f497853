"""Models: shapes of DESIGN.md §1, normalised passages, safe self-describing checkpoints, CCA."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sheetaudio_gui.config import ModelDims
from sheetaudio_gui.core.models import (
    CCA,
    ModelFileError,
    PassageModel,
    audio_input,
    load_model,
    save_model,
    sheet_input,
    with_summary,
)


@pytest.fixture(scope="module")
def model() -> PassageModel:
    torch.manual_seed(0)
    return PassageModel().eval()


def test_snippet_cnns_map_windows_to_32_dimensions(model):
    sheet = sheet_input(np.full((3, 80, 90), 255, dtype=np.uint8))
    audio = audio_input(np.zeros((4, 92, 20), dtype=np.float32))
    with torch.inference_mode():
        assert model.sheet_snippets(sheet).shape == (3, 32)
        assert model.audio_snippets(audio).shape == (4, 32)


def test_passage_embeddings_are_64_dimensional_and_unit_length(model):
    seqs = torch.randn(5, 7, 32)
    lengths = torch.tensor([7, 3, 1, 5, 2])
    with torch.inference_mode():
        out = model.sheet_passages(seqs, lengths)
    assert out.shape == (5, 64)
    assert torch.allclose(out.norm(dim=1), torch.ones(5), atol=1e-5)


@pytest.mark.parametrize("summary", ["last", "last+mean"])
def test_padding_beyond_a_passage_length_does_not_change_its_embedding(model, summary):
    model = with_summary(model, summary)
    seq = torch.randn(1, 3, 32)
    padded = torch.cat([seq, torch.randn(1, 4, 32)], dim=1)
    with torch.inference_mode():
        a = model.audio_passages(seq, torch.tensor([3]))
        b = model.audio_passages(padded, torch.tensor([3]))
    assert torch.allclose(a, b, atol=1e-6)


def test_a_last_plus_mean_summary_starts_halfway_between_the_last_state_and_the_mean(model):
    """Fine-tuning into the new summary starts from the trained projection applied to both."""
    upgraded = with_summary(model, "last+mean")
    seq = torch.randn(2, 6, 32)
    with torch.inference_mode():
        gru = model.sheet_gru
        states, _ = gru.gru(seq)
        halfway = gru.project(states[:, -1]) + states.mean(1) @ gru.project.weight.T
        summary = upgraded.sheet_passages(seq, torch.tensor([6, 6]))
        assert torch.allclose(summary, F.normalize(halfway, dim=1), atol=1e-5)
        assert not torch.allclose(summary, model.sheet_passages(seq, torch.tensor([6, 6])))
        snippets = audio_input(torch.randn(2, 92, 20))  # the snippet CNNs are the same
        assert torch.equal(upgraded.audio_snippets(snippets), model.audio_snippets(snippets))
    with pytest.raises(ValueError, match="cannot turn"):
        with_summary(upgraded, "last")


def test_a_checkpoint_keeps_its_summary_and_older_files_read_as_last_state(tmp_path, model):
    path = tmp_path / "mean.pt"
    upgraded = with_summary(model, "last+mean")
    save_model(upgraded, path)
    loaded = load_model(path).model
    seq, lengths = torch.randn(3, 5, 32), torch.tensor([5, 2, 4])
    with torch.inference_mode():
        assert loaded.dims.summary == "last+mean"
        expected = upgraded.audio_passages(seq, lengths)
        assert torch.allclose(loaded.audio_passages(seq, lengths), expected, atol=1e-6)
    save_model(model, path)
    payload = torch.load(path, weights_only=True)
    del payload["dims"]["summary"]  # as in a file written before summaries existed
    torch.save(payload, path)
    assert load_model(path).model.dims.summary == "last"


def test_sheet_input_turns_paper_into_zero_and_ink_into_one():
    x = sheet_input(np.array([[[255, 0]]], dtype=np.uint8))
    assert x.shape == (1, 1, 1, 2)
    assert x[0, 0, 0].tolist() == [0.0, 1.0]


def test_checkpoint_round_trip_rebuilds_the_same_model_with_weights_only(tmp_path, model):
    path = tmp_path / "m.pt"
    model_id = save_model(model, path, info={"stage": "test"})
    loaded = load_model(path)
    assert loaded.model_id == model_id and len(model_id) == 16
    assert loaded.info == {"stage": "test"}
    x = audio_input(torch.randn(2, 92, 20))
    with torch.inference_mode():
        assert torch.allclose(model.audio_snippets(x), loaded.model.audio_snippets(x), atol=1e-5)


def test_checkpoint_keeps_its_dimensions(tmp_path):
    dims = ModelDims(cnn_channels=(8, 8, 16, 16), gru_hidden=32)
    path = tmp_path / "small.pt"
    save_model(PassageModel(dims), path)
    assert load_model(path).model.dims == dims


def test_damaged_or_foreign_model_files_are_refused_with_the_path(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match=r"bad\.pt"):
        load_model(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"hello": torch.zeros(1)}, foreign)
    with pytest.raises(ModelFileError, match="not a sheetaudio model"):
        load_model(foreign)
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "missing.pt")


def test_cca_makes_linearly_related_views_agree():
    g = torch.Generator().manual_seed(0)
    latent = torch.randn(2000, 8, generator=g)
    sheet = latent @ torch.randn(8, 16, generator=g) + 0.05 * torch.randn(2000, 16, generator=g)
    audio = latent @ torch.randn(8, 16, generator=g) + 0.05 * torch.randn(2000, 16, generator=g)
    cca = CCA.fit(sheet, audio)
    a, b = cca.sheet(sheet)[:, :8], cca.audio(audio)[:, :8]
    corr = torch.nn.functional.cosine_similarity(a - a.mean(0), b - b.mean(0), dim=0)
    assert corr.min() > 0.95


def test_the_model_card_and_the_library_metrics_describe_the_shipped_weights():
    """A new model must come with its measurements: the card names its id, and the end-to-end
    library numbers were measured with it."""
    import json
    from pathlib import Path

    from sheetaudio_gui.core.models import load_model

    models = Path(__file__).resolve().parents[1] / "models"
    shipped = load_model(models / "sheetaudio-passage.pt").model_id
    card = (models / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert f"| model id | `{shipped}`" in card
    library = json.loads((models / "metrics-library.json").read_text(encoding="utf-8"))
    assert library["model"] == shipped
    report = json.loads((models / "metrics.json").read_text(encoding="utf-8"))
    assert report["best"] in card  # the card's tables come from this report
