"""The networks: snippet CNNs (one per modality), GRU passage encoders, optional CCA refinement.

Dimensions live in `config.ModelDims` and travel inside every checkpoint, so a weights file
rebuilds itself. Checkpoints are plain dicts of tensors and primitives loaded with
`torch.load(weights_only=True)`: a library or model file can never execute code.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from sheetaudio_gui.config import ModelDims
from sheetaudio_gui.core.errors import SheetAudioError

CHECKPOINT_FORMAT = "sheetaudio-model"
CHECKPOINT_VERSION = 1


class ModelFileError(SheetAudioError):
    """A model file that is missing, damaged or of another format."""


def sheet_input(windows: npt.NDArray[np.uint8] | torch.Tensor) -> torch.Tensor:
    """(n, 80, 90) grayscale windows, paper 255 -> (n, 1, 80, 90) float ink in [0, 1]."""
    t = torch.as_tensor(windows)
    return (1.0 - t.float() / 255.0).unsqueeze(1)


def audio_input(windows: npt.NDArray[np.floating] | torch.Tensor) -> torch.Tensor:
    """(n, 92, 20) log-spectrogram windows -> (n, 1, 92, 20) float32."""
    return torch.as_tensor(windows).float().unsqueeze(1)


class SnippetCNN(nn.Module):
    """Dorfer et al.'s snippet encoder: (batch, 1, H, W) -> (batch, snippet_dim).

    Four blocks of [conv3x3-BN-ELU] x2 + 2x2 max-pool, a 1x1 conv to `snippet_dim` channels,
    flatten, linear. The input is batch-normalised first so that both modalities arrive at the
    convolutions on a comparable scale.
    """

    def __init__(self, dims: ModelDims, height: int, width: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.BatchNorm2d(1)]
        channels_in = 1
        for channels in dims.cnn_channels:
            for _ in range(2):
                layers += [
                    nn.Conv2d(channels_in, channels, 3, padding=1, bias=False),
                    nn.BatchNorm2d(channels),
                    nn.ELU(),
                ]
                channels_in = channels
            layers.append(nn.MaxPool2d(2))
        layers += [nn.Conv2d(channels_in, dims.snippet_dim, 1), nn.BatchNorm2d(dims.snippet_dim)]
        self.features = nn.Sequential(*layers)
        pooled = 2 ** len(dims.cnn_channels)
        flat = dims.snippet_dim * (height // pooled) * (width // pooled)
        self.project = nn.Linear(flat, dims.snippet_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.features(x).flatten(1))  # type: ignore[no-any-return]


PASSAGE_SUMMARIES = ("last", "last+mean")


class PassageGRU(nn.Module):
    """Summarise snippet embeddings: (batch, steps, 32) + lengths -> (batch, 64), L2-normalised.

    With `summary="last+mean"` the summary also projects the mean of the GRU's states over the
    passage: the last state is dominated by the last few snippets, so a passage that ends a
    little earlier or later (any excerpt of a recording) moved it far; the mean moves little.
    """

    def __init__(self, dims: ModelDims) -> None:
        super().__init__()
        if dims.summary not in PASSAGE_SUMMARIES:
            raise ValueError(f"unknown passage summary {dims.summary!r} ({PASSAGE_SUMMARIES})")
        self.summary = dims.summary
        self.gru = nn.GRU(dims.snippet_dim, dims.gru_hidden, num_layers=1, batch_first=True)
        self.project = nn.Linear(dims.gru_hidden, dims.passage_dim)
        if self.summary == "last+mean":
            self.project_mean = nn.Linear(dims.gru_hidden, dims.passage_dim, bias=False)

    def forward(self, sequences: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(
            sequences, lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        states, last = self.gru(packed)  # last: (1, batch, hidden), after each sequence's end
        out = self.project(last[0])
        if self.summary == "last+mean":
            padded, _ = nn.utils.rnn.pad_packed_sequence(states, batch_first=True)  # zeros after
            mean = padded.sum(1) / lengths.to(padded.device, padded.dtype).unsqueeze(1)
            out = out + self.project_mean(mean)
        return F.normalize(out, dim=1)


@dataclass
class CCA:
    """Linear CCA refinement fitted on paired embeddings: x -> (x - mean) @ W, then L2-normed.

    Stage 4 of the paper; optional, kept only where it measurably helps.
    """

    sheet_mean: torch.Tensor
    sheet_proj: torch.Tensor
    audio_mean: torch.Tensor
    audio_proj: torch.Tensor

    def sheet(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize((x - self.sheet_mean) @ self.sheet_proj, dim=1)

    def audio(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize((x - self.audio_mean) @ self.audio_proj, dim=1)

    @staticmethod
    def fit(sheet: torch.Tensor, audio: torch.Tensor, reg: float = 1e-3) -> CCA:
        """Fit on paired (n, d) embeddings; returns projections onto all d canonical directions."""
        xs, ya = sheet.double(), audio.double()
        mx, my = xs.mean(0), ya.mean(0)
        xs, ya = xs - mx, ya - my
        n = xs.shape[0]
        cxx = xs.T @ xs / (n - 1) + reg * torch.eye(xs.shape[1], dtype=xs.dtype)
        cyy = ya.T @ ya / (n - 1) + reg * torch.eye(ya.shape[1], dtype=ya.dtype)
        cxy = xs.T @ ya / (n - 1)

        def inv_sqrt(c: torch.Tensor) -> torch.Tensor:
            vals, vecs = torch.linalg.eigh(c)
            root: torch.Tensor = vecs @ torch.diag(vals.clamp_min(1e-12).rsqrt()) @ vecs.T
            return root

        wx, wy = inv_sqrt(cxx), inv_sqrt(cyy)
        u, _, vh = torch.linalg.svd(wx @ cxy @ wy)
        return CCA(mx.float(), (wx @ u).float(), my.float(), (wy @ vh.T).float())


class PassageModel(nn.Module):
    """Both modalities: snippet CNNs, passage GRUs and the optional CCA layer."""

    def __init__(self, dims: ModelDims | None = None) -> None:
        super().__init__()
        self.dims = dims or ModelDims()
        d = self.dims
        self.sheet_cnn = SnippetCNN(d, d.sheet_snippet_height, d.sheet_snippet_width)
        self.audio_cnn = SnippetCNN(d, d.spec_bins, d.audio_snippet_frames)
        self.sheet_gru = PassageGRU(d)
        self.audio_gru = PassageGRU(d)
        self.cca: CCA | None = None

    # --- snippets ---
    def sheet_snippets(self, x: torch.Tensor) -> torch.Tensor:
        """(n, 1, 80, 90) -> (n, 32) snippet embeddings (not normalised)."""
        return self.sheet_cnn(x.contiguous(memory_format=torch.channels_last))  # type: ignore[no-any-return]

    def audio_snippets(self, x: torch.Tensor) -> torch.Tensor:
        """(n, 1, 92, 20) -> (n, 32) snippet embeddings (not normalised)."""
        return self.audio_cnn(x.contiguous(memory_format=torch.channels_last))  # type: ignore[no-any-return]

    # --- passages ---
    def sheet_passages(self, snippets: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(batch, steps, 32) padded snippet sequences + (batch,) lengths -> (batch, 64)."""
        out: torch.Tensor = self.sheet_gru(snippets, lengths)
        return self.cca.sheet(out) if self.cca is not None else out

    def audio_passages(self, snippets: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(batch, steps, 32) padded snippet sequences + (batch,) lengths -> (batch, 64)."""
        out: torch.Tensor = self.audio_gru(snippets, lengths)
        return self.cca.audio(out) if self.cca is not None else out


@dataclass
class LoadedModel:
    """A model ready for inference, with what its checkpoint says about itself."""

    model: PassageModel
    model_id: str  # content hash of the weights: the index stores it to know when to re-embed
    info: dict[str, Any] = field(default_factory=dict)


def with_summary(model: PassageModel, summary: str) -> PassageModel:
    """The same weights with the summary "last+mean", for fine-tuning a "last" model into it.

    The mean's projection starts as a copy of the last state's and both are halved, so the
    summary starts halfway between the last state and the mean of all states (the GRU's states
    all live where the projection was trained): training starts from a model that already
    reads every state rather than from one that ignores all but the last.
    """
    if summary == model.dims.summary:
        return model
    if (model.dims.summary, summary) != ("last", "last+mean"):
        raise ValueError(f"cannot turn a {model.dims.summary!r} summary into {summary!r}")
    new = PassageModel(replace(model.dims, summary=summary))
    state = model.state_dict()
    new.load_state_dict(state, strict=False)  # all but the projection of the mean
    with torch.no_grad():
        for gru in (new.sheet_gru, new.audio_gru):
            gru.project_mean.weight.copy_(gru.project.weight * 0.5)
            gru.project.weight.mul_(0.5)
            gru.project.bias.mul_(0.5)
    new.cca = model.cca
    new.train(model.training)
    return new.to(next(model.parameters()).device)


def dims_to_dict(dims: ModelDims) -> dict[str, Any]:
    """Network sizes as plain values (lists, ints) that `torch.load(weights_only=True)` accepts."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(dims).items()}


def dims_from_dict(raw: dict[str, Any]) -> ModelDims:
    values = dict(raw)
    values["cnn_channels"] = tuple(values["cnn_channels"])
    return ModelDims(**values)


def save_model(model: PassageModel, path: str | Path, info: dict[str, Any] | None = None) -> str:
    """Write a self-describing checkpoint; returns its model id (hash of the weights)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    cca = None
    if model.cca is not None:
        cca = {k: v.detach().cpu() for k, v in asdict(model.cca).items()}
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "dims": dims_to_dict(model.dims),
        "state_dict": state,
        "cca": cca,
        "info": info or {},
    }
    buffer = io.BytesIO()
    torch.save({**payload, "model_id": ""}, buffer)
    model_id = hashlib.sha256(buffer.getvalue()).hexdigest()[:16]
    payload["model_id"] = model_id
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # atomic: a crash never leaves half a model file
    return model_id


def load_model(path: str | Path) -> LoadedModel:
    """Load a checkpoint safely (weights only) and put the model in inference mode."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found; reinstall sheetaudio or pass --model")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for damaged files
        raise ModelFileError(f"{path}: not a readable sheetaudio model ({error})") from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ModelFileError(f"{path}: not a sheetaudio model file")
    model = PassageModel(dims_from_dict(payload["dims"]))
    model.load_state_dict(payload["state_dict"])
    if payload.get("cca"):
        model.cca = CCA(**payload["cca"])
    model.eval()
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return LoadedModel(model, str(payload["model_id"]), dict(payload.get("info") or {}))
