"""Training pieces of section 5: the learning-rate schedule, Adam settings and label smoothing."""

from __future__ import annotations

import torch
from torch import nn

from .config import TransformerConfig


def noam_rate(step: int, d_model: int, warmup_steps: int, factor: float = 1.0) -> float:
    """lrate = factor * d_model^-0.5 * min(step^-0.5, step * warmup_steps^-1.5)   (equation 3).

    Steps count from 1: the rate rises linearly for warmup_steps steps, then decays as step^-0.5.
    """
    if step < 1:
        raise ValueError(f"steps count from 1, got step={step}")
    return factor * d_model ** -0.5 * min(step ** -0.5, step * warmup_steps ** -1.5)


def teacher_forcing_pair(tgt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a target that starts with BOS into the decoder's input and the labels it must predict.

    The input is the target shifted right by one, so position t sees tokens 0..t and predicts token t + 1.
    Shape: tgt (B, T + 1) -> decoder input (B, T), labels (B, T).
    """
    if tgt.dim() != 2 or tgt.shape[1] < 2:
        raise ValueError(f"target must be (batch, seq) with seq >= 2 (BOS and one token), got {tuple(tgt.shape)}")
    return tgt[:, :-1], tgt[:, 1:]


def teacher_forcing_loss(model: nn.Module, src: torch.Tensor, tgt: torch.Tensor, loss_fn: nn.Module,
                         src_key_allowed: torch.Tensor | None = None) -> torch.Tensor:
    """One parallel, causally masked pass over the whole shifted target (section 5)."""
    # src (B, S), tgt (B, T + 1) -> scalar loss
    decoder_input, labels = teacher_forcing_pair(tgt)
    return loss_fn(model(src, decoder_input, src_key_allowed), labels)


def make_optimizer(model: nn.Module, config: TransformerConfig) -> torch.optim.Adam:
    """Adam with the paper's beta_1 = 0.9, beta_2 = 0.98, epsilon = 1e-9; the schedule sets the rate."""
    return torch.optim.Adam(model.parameters(), lr=1.0, betas=config.adam_betas, eps=config.adam_eps)


def noam_scheduler(optimizer: torch.optim.Optimizer, config: TransformerConfig,
                   factor: float = 1.0) -> torch.optim.lr_scheduler.LambdaLR:
    """Multiplies the optimiser's base rate (1.0 from make_optimizer) by noam_rate at step + 1."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: noam_rate(i + 1, config.d_model, config.warmup_steps, factor))


class LabelSmoothingLoss(nn.Module):
    """Cross-entropy against smoothed targets (section 5.4, epsilon_ls = 0.1; Szegedy et al. 2016).

    The true token gets 1 - epsilon; epsilon is spread evenly over the other tokens except padding,
    which gets no mass; positions whose target is padding do not count.
    """

    def __init__(self, vocab_size: int, smoothing: float = 0.1, *, pad_id: int | None):
        super().__init__()
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.vocab_size, self.smoothing, self.pad_id = vocab_size, smoothing, pad_id

    @classmethod
    def from_config(cls, config: TransformerConfig) -> LabelSmoothingLoss:
        """The loss for a model built from ``config``: its target vocabulary, epsilon_ls and pad id."""
        return cls(config.tgt_vocab_size, config.label_smoothing, pad_id=config.pad_id)

    def smoothed_targets(self, target: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
        # target (N,) -> distributions (N, vocab)
        others = self.vocab_size - 1 - (self.pad_id is not None)
        dist = torch.full((target.shape[0], self.vocab_size), self.smoothing / others, dtype=dtype, device=target.device)
        if self.pad_id is not None:
            dist[:, self.pad_id] = 0.0
        dist.scatter_(1, target[:, None], 1.0 - self.smoothing)
        return dist

    def forward(self, log_probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # log_probs (..., vocab), target (...) -> mean loss over non-padding positions
        if log_probs.shape[:-1] != target.shape or log_probs.shape[-1] != self.vocab_size:
            raise ValueError(f"log_probs {tuple(log_probs.shape)} do not match target {tuple(target.shape)} "
                             f"and vocab {self.vocab_size}")
        log_probs, target = log_probs.reshape(-1, self.vocab_size), target.reshape(-1)  # (N, vocab), (N,)
        keep = torch.ones_like(target, dtype=torch.bool) if self.pad_id is None else target != self.pad_id
        loss = -(self.smoothed_targets(target, log_probs.dtype) * log_probs).sum(dim=-1)  # (N,)
        return loss[keep].sum() / keep.sum().clamp(min=1)
