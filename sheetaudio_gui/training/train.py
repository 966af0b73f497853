"""Staged training with checkpoint-and-resume (a session may be killed at any moment).

Stages, after Carvalho & Widmer (2023):
1. `snippet`  - the snippet CNNs alone, trained on notehead-centred sheet windows paired with
   onset-centred audio windows (Dorfer et al. 2018); passage = mean of snippets is the baseline;
2. `gru`      - passage GRUs on top of the frozen CNNs;
3. `finetune` - everything end to end at a lower learning rate;
4. `cca`      - optional linear CCA refinement, kept only if it improves validation MRR.

Each stage lives in `RUN/<stage>/`: `last.pt` (everything needed to resume: weights, optimiser,
step, random state), `best.pt` (the best validation model, a normal model file) and `log.jsonl`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from sheetaudio_gui.config import (
    BATCH_SIZE,
    LEARNING_RATE,
    PASSAGE_MARGIN,
    SNIPPET_MARGIN,
    ModelDims,
)
from sheetaudio_gui.core.jobs import CancelToken, Job, Progress
from sheetaudio_gui.core.models import (
    CCA,
    PassageModel,
    dims_from_dict,
    dims_to_dict,
    load_model,
    save_model,
    with_summary,
)
from sheetaudio_gui.training.bank import ensure_bank
from sheetaudio_gui.training.batches import (
    BankTensors,
    audio_windows,
    pad_sequences,
    sample_notes,
    sample_passages,
    sheet_windows,
)
from sheetaudio_gui.training.crops import (
    Across,
    CropIndex,
    across_rows,
    crop_index,
    crop_rows,
    loosen,
)
from sheetaudio_gui.training.evaluate import (
    Summary,
    embed_rows,
    evaluate_bank,
    evaluation_rows,
)

log = logging.getLogger(__name__)

STAGES = ("snippet", "gru", "finetune", "cca")
LOSSES = ("hinge", "infonce")
INFONCE_TEMPERATURE = 0.05  # softmax temperature on cosine similarities (InfoNCE loss)
FINETUNE_LR_FACTOR = 0.1  # end-to-end fine-tuning runs at a tenth of the learning rate
WARMUP_STEPS = 200  # linear learning-rate warm-up at the start of a stage
VALID_SYSTEMS = 600  # validation subset (fixed) used during training; the full split at the end
CCA_FIT_PASSAGES = 6000  # training passages used to fit the CCA layer
# The shipped model's schedule (models/MODEL_CARD.md): about 1.5 h of CPU on 2 cores in all;
# validation MRR was still rising slowly at the end of every stage.
DEFAULT_STEPS = {"snippet": 2000, "gru": 1000, "finetune": 1000, "cca": 0}


@dataclass(frozen=True)
class StageConfig:
    stage: str
    steps: int
    batch: int = BATCH_SIZE
    lr: float = LEARNING_RATE
    margin: float = PASSAGE_MARGIN
    eval_every: int = 250
    checkpoint_every: int = 100
    seed: int = 0
    device: str = "cpu"
    loss: str = "hinge"  # "hinge" (the papers') or "infonce" (softmax over the batch)
    crops: float = 0.0  # share of passage pairs cut as aligned sub-system crops (crops.py)
    across: float = 0.0  # share of passage pairs cut across a system end (crops.across_rows)
    loose: float = 0.0  # share of passage pairs whose audio ends are moved (crops.loosen)
    domain: bool = False  # domain randomisation of fonts and piano sounds (batches.py)
    init: str = ""  # weights file the stage starts from instead of the previous stage's best.pt
    per_piece: int = 1  # systems of one piece drawn together into a batch (hard negatives)
    summary: str = ""  # turn the starting model's passage summary into this (models.with_summary)


def ranking_loss(
    a: torch.Tensor, b: torch.Tensor, margin: float, exclude: torch.Tensor | None = None
) -> torch.Tensor:
    """Hinge ranking loss with in-batch negatives on cosine similarity: (n, d), (n, d) -> ().

    For every pair, every other item of the batch is a negative in both directions; the loss is
    the sum over negatives of max(0, margin - s(pos) + s(neg)), averaged over the pairs.
    `exclude` ((n, n) bool) marks items that are no negatives of each other (they share music).
    """
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    sim = a @ b.T
    pos = sim.diag()
    off = ~torch.eye(len(a), dtype=torch.bool, device=a.device)
    if exclude is not None:
        off = off & ~exclude
    cost_a = (margin - pos[:, None] + sim).clamp_min(0) * off  # anchor a_i, negatives b_j
    cost_b = (margin - pos[None, :] + sim).clamp_min(0) * off  # anchor b_j, negatives a_i
    return (cost_a.sum() + cost_b.sum()) / len(a)


def infonce_loss(
    a: torch.Tensor, b: torch.Tensor, temperature: float, exclude: torch.Tensor | None = None
) -> torch.Tensor:
    """Symmetric InfoNCE on cosine similarity: (n, d), (n, d) -> ().

    Each item must pick its partner among all items of the other modality in the batch (softmax
    cross-entropy both ways). Unlike the summed hinge, whose negatives stop counting once they are
    `margin` below the positive, it keeps pushing the hardest negatives: what R@1 rewards.
    `exclude` ((n, n) bool, diagonal False) removes items that share music from the negatives.
    """
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    logits = a @ b.T / temperature
    if exclude is not None:
        logits = logits.masked_fill(exclude, float("-inf"))
    target = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def pair_loss(
    a: torch.Tensor, b: torch.Tensor, cfg: StageConfig, exclude: torch.Tensor | None = None
) -> torch.Tensor:
    """The stage's configured loss between paired embeddings."""
    if cfg.loss == "infonce":
        return infonce_loss(a, b, INFONCE_TEMPERATURE, exclude)
    return ranking_loss(a, b, cfg.margin, exclude)


def stage_config(stage: str, steps: int | None, device: str, seed: int, **over: Any) -> StageConfig:
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; one of {', '.join(STAGES)}")
    if over.get("loss", "hinge") not in LOSSES:
        raise ValueError(f"unknown loss {over['loss']!r}; one of {', '.join(LOSSES)}")
    lr = LEARNING_RATE * (FINETUNE_LR_FACTOR if stage == "finetune" else 1.0)
    margin = SNIPPET_MARGIN if stage == "snippet" else PASSAGE_MARGIN
    return StageConfig(
        stage,
        steps if steps is not None else DEFAULT_STEPS[stage],
        lr=lr,
        margin=margin,
        seed=seed,
        device=device,
        **over,
    )


def _set_trainable(model: PassageModel, stage: str) -> list[torch.nn.Parameter]:
    cnn = stage in ("snippet", "finetune")
    gru = stage in ("gru", "finetune")
    for module, on in (
        (model.sheet_cnn, cnn),
        (model.audio_cnn, cnn),
        (model.sheet_gru, gru),
        (model.audio_gru, gru),
    ):
        module.requires_grad_(on)
    if stage == "gru":  # frozen CNNs keep their batch-norm statistics
        model.sheet_cnn.eval()
        model.audio_cnn.eval()
    return [p for p in model.parameters() if p.requires_grad]


def _step_loss(
    model: PassageModel,
    bt: BankTensors,
    cfg: StageConfig,
    gen: torch.Generator,
    crops: CropIndex | None = None,
) -> tuple[torch.Tensor, int]:
    """One batch's loss; returns (loss, pairs in the batch)."""
    if cfg.stage == "snippet":
        rows = bt.notes[sample_notes(bt, cfg.batch, gen).to(bt.device)]
        sw, _ = sheet_windows(
            bt, rows[:, 0], gen, augment=True, centre_x=rows[:, 1], domain=cfg.domain
        )
        half = 10  # audio window centred on the onset frame
        aw, _ = audio_windows(
            bt, rows[:, 2], rows[:, 3] - half, rows[:, 3] + half, gen, True, False, cfg.domain
        )
        return pair_loss(model.sheet_snippets(sw), model.audio_snippets(aw), cfg), len(rows)
    picked = sample_passages(bt, cfg.batch, gen, cfg.per_piece)
    rows = bt.passages[picked.to(bt.device)]
    segments, exclude, lengths_of = rows[:, 0], None, None
    if crops is None:
        x_range, f0, f1 = None, rows[:, 2], rows[:, 3]
    else:
        x0, x1, f0, f1 = crop_rows(bt, crops, picked, cfg.crops, gen)
        x_range = (x0, x1)
        if cfg.across > 0:  # (no draws otherwise: earlier runs' random streams stay the same)
            cut = across_rows(bt, crops, picked, cfg.across, gen)
            segments, x_range, lengths_of, exclude = _across_segments(bt, rows, cut, x0, x1)
            f0, f1 = torch.where(cut.use, cut.f0, f0), torch.where(cut.use, cut.f1, f1)
    if cfg.loose > 0:  # (no draws otherwise, as above)
        f0, f1 = loosen(f0, f1, cfg.loose, gen)
    sw, seg_lengths = sheet_windows(
        bt, segments, gen, augment=True, domain=cfg.domain, x_range=x_range
    )
    sl = seg_lengths if lengths_of is None else lengths_of(seg_lengths)
    aw, al = audio_windows(bt, rows[:, 1], f0, f1, gen, augment=True, domain=cfg.domain)
    sheet = model.sheet_passages(pad_sequences(model.sheet_snippets(sw), sl), sl)
    audio = model.audio_passages(pad_sequences(model.audio_snippets(aw), al), al)
    return pair_loss(sheet, audio, cfg, exclude), len(rows)


def _across_segments(
    bt: BankTensors,
    rows: torch.Tensor,
    cut: Across,
    x0: torch.Tensor,
    x1: torch.Tensor,
) -> tuple[
    torch.Tensor,
    tuple[torch.Tensor, torch.Tensor],
    Callable[[torch.Tensor], torch.Tensor],
    torch.Tensor | None,
]:
    """Sheet segments of a batch whose pairs may run across a system end: -> (segment systems,
    their x-ranges, segment lengths -> pair lengths, pairs that are no negatives of each other).

    A pair cut across is two segments in a row (the tail of its system, the head of the next), so
    the flat windows of `sheet_windows` already lie in reading order pair by pair.
    """
    systems = rows[:, 0].cpu()
    use = cut.use
    nxt = torch.where(use, bt.passages[cut.next_row.clamp(min=0).to(bt.device), 0].cpu(), -1)
    widths = bt.systems[systems.to(bt.device), 1].cpu().float()
    first_x0 = torch.where(use, cut.x0, x0.cpu())
    first_x1 = torch.where(use, widths, x1.cpu())
    seg_sys, seg_x0, seg_x1, pair = [], [], [], []
    for i in range(len(systems)):
        seg_sys.append(int(systems[i]))
        seg_x0.append(float(first_x0[i]))
        seg_x1.append(float(first_x1[i]))
        pair.append(i)
        if bool(use[i]):
            seg_sys.append(int(nxt[i]))
            seg_x0.append(0.0)
            seg_x1.append(float(cut.x1[i]))
            pair.append(i)
    pair_t = torch.tensor(pair)
    n = len(systems)

    def lengths_of(seg_lengths: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(n, dtype=seg_lengths.dtype, device=seg_lengths.device)
        return out.index_add_(0, pair_t.to(seg_lengths.device), seg_lengths)

    exclude = None
    if bool(use.any()):  # a pair across s and s + 1 shares music with pairs of s or of s + 1
        first, second = systems[:, None], nxt[:, None]
        shares = (first == first.T) | (first == second.T) | (second == first.T)
        shares |= (second == second.T) & (second >= 0)
        shares &= ~torch.eye(n, dtype=torch.bool)
        exclude = shares.to(bt.device)
    return (
        torch.tensor(seg_sys),
        (torch.tensor(seg_x0), torch.tensor(seg_x1)),
        lengths_of,
        exclude,
    )


def _lr_at(cfg: StageConfig, step: int) -> float:
    warm = min(1.0, (step + 1) / WARMUP_STEPS)
    cosine = 0.5 * (1 + math.cos(math.pi * min(step, cfg.steps) / max(cfg.steps, 1)))
    return cfg.lr * warm * (0.05 + 0.95 * cosine)


def _score(metrics: dict[str, dict[str, float]]) -> float:
    return 0.5 * (metrics["A2S"]["MRR"] + metrics["S2A"]["MRR"])


def _initial_model(run: Path, stage: str, dims: ModelDims | None, init: str = "") -> PassageModel:
    if init:  # e.g. the shipped weights: training goes on across machines without the run folder
        return load_model(init).model
    previous = {"gru": "snippet", "finetune": "gru", "cca": "finetune"}.get(stage)
    if previous is None:
        return PassageModel(dims)
    source = run / previous / "best.pt"
    if not source.is_file():
        raise FileNotFoundError(
            f"{source}: stage {stage!r} starts from stage {previous!r}; run it first"
        )
    return load_model(source).model


def train_stage(
    corpus: Path,
    run: Path,
    cfg: StageConfig,
    dims: ModelDims | None = None,
    cancel: CancelToken | None = None,
    threads: int | None = None,
) -> Job[Path]:
    """Train one stage, resuming from `RUN/<stage>/last.pt` if present; returns best.pt's path."""
    if threads:
        torch.set_num_threads(threads)
    out = Path(run) / cfg.stage
    out.mkdir(parents=True, exist_ok=True)
    train_bank = yield from ensure_bank(Path(corpus), "train")
    valid_bank = yield from ensure_bank(Path(corpus), "valid")
    device = torch.device(cfg.device)
    bt = BankTensors.from_bank(train_bank, device)
    bv = BankTensors.from_bank(valid_bank, device)
    if cfg.stage == "cca":
        return (yield from _fit_cca(run, out, bt, bv))
    return (yield from train_on_banks(bt, bv, Path(run), cfg, dims, cancel, str(corpus)))


def train_on_banks(
    bt: BankTensors,
    bv: BankTensors,
    run: Path,
    cfg: StageConfig,
    dims: ModelDims | None = None,
    cancel: CancelToken | None = None,
    corpus: str = "",
) -> Job[Path]:
    """The training loop of one stage on banks already on the device."""
    device = bt.device
    out = run / cfg.stage
    out.mkdir(parents=True, exist_ok=True)

    last = out / "last.pt"
    state = torch.load(last, map_location=device, weights_only=True) if last.is_file() else None
    if state is not None and "dims" in state:  # a resumed run keeps the sizes it started with
        dims = dims_from_dict(state["dims"])
    model = _initial_model(Path(run), cfg.stage, dims, cfg.init)
    if cfg.summary:  # before a resume loads last.pt: its weights have the new summary's shape
        model = with_summary(model, cfg.summary)
    model = model.to(device)
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    model.train()
    params = _set_trainable(model, cfg.stage)
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    step, best, trained_s = 0, -1.0, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        step, best = int(state["step"]), float(state["best"])
        trained_s = float(state.get("trained_s", 0.0))
        log.info("resuming %s at step %d (best %.4f)", cfg.stage, step, best)
    summary: Summary = "mean" if cfg.stage == "snippet" else "gru"
    wants_index = cfg.crops > 0 or cfg.across > 0
    crops = crop_index(bt) if wants_index and cfg.stage != "snippet" else None
    log_file = (out / "log.jsonl").open("a")
    pairs_done, t0 = 0, time.perf_counter()
    try:
        while step < cfg.steps:
            if cancel is not None:
                cancel.raise_if_cancelled()
            for group in opt.param_groups:
                group["lr"] = _lr_at(cfg, step)
            loss, pairs = _step_loss(model, bt, cfg, gen, crops)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            step += 1
            pairs_done += pairs
            rate = pairs_done / (time.perf_counter() - t0)
            record: dict[str, Any] = {
                "step": step,
                "loss": round(float(loss.detach()), 5),
                "pairs_per_s": round(rate, 2),
                "trained_s": round(trained_s + time.perf_counter() - t0, 3),
            }
            if step % cfg.eval_every == 0 or step == cfg.steps:
                metrics = evaluate_bank(model, bv, summary, limit=VALID_SYSTEMS, seed=cfg.seed)
                _set_trainable(model, cfg.stage)
                record["valid"] = metrics
                score = _score(metrics)
                if score > best:
                    best = score
                    save_model(model, out / "best.pt", info=_info(cfg, step, metrics, corpus))
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                _save_last(last, model, opt, gen, step, best, cfg, record["trained_s"])
            yield Progress(step, cfg.steps, f"loss {float(loss.detach()):.3f}, {rate:.1f} pairs/s")
    finally:
        log_file.close()
    if not (out / "best.pt").is_file():
        save_model(model, out / "best.pt", info=_info(cfg, step, {}, corpus))
    return out / "best.pt"


def _info(cfg: StageConfig, step: int, metrics: dict[str, Any], corpus: str) -> dict[str, Any]:
    return {
        "stage": cfg.stage,
        "step": step,
        "valid": metrics,
        "config": asdict(cfg),
        "corpus": str(corpus),
    }


def _save_last(
    path: Path,
    model: PassageModel,
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    step: int,
    best: float,
    cfg: StageConfig,
    trained_s: float,
) -> None:
    """Atomic resume checkpoint: a kill during the write leaves the previous one intact."""
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "generator": gen.get_state(),
            "step": step,
            "best": best,
            "config": asdict(cfg),
            "dims": dims_to_dict(model.dims),
            "trained_s": trained_s,  # wall-clock seconds spent in this stage, over all resumes
        },
        tmp,
    )
    tmp.replace(path)


def _fit_cca(run: Path, out: Path, bt: BankTensors, bv: BankTensors) -> Job[Path]:
    """Fit CCA on training passages; keep it only if validation MRR improves."""
    loaded = load_model(run / "finetune" / "best.pt")
    model = loaded.model.to(bt.device)
    yield Progress(0, 3, "embedding training passages")
    rows = evaluation_rows(bt, limit=CCA_FIT_PASSAGES)
    sheet, audio = embed_rows(model, bt, rows)
    yield Progress(1, 3, "fitting CCA")
    before = evaluate_bank(model, bv)
    model.cca = CCA.fit(sheet, audio)
    after = evaluate_bank(model, bv)
    yield Progress(2, 3, "validating")
    keep = _score(after) > _score(before)
    if not keep:
        model.cca = None
    info = dict(loaded.info)
    info.update(
        {"stage": "cca" if keep else "finetune", "cca_valid": after, "no_cca_valid": before}
    )
    save_model(model, out / "best.pt", info=info)
    (out / "log.jsonl").write_text(
        json.dumps({"before": before, "after": after, "kept": keep}) + "\n"
    )
    yield Progress(3, 3, f"CCA {'kept' if keep else 'dropped'}")
    return out / "best.pt"
