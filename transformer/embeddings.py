"""Token embeddings and the positional variants: sinusoidal, learned, rotary (RoPE), linear bias (ALiBi)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import TransformerConfig


def check_token_ids(ids: torch.Tensor, vocab_size: int, name: str = "token ids") -> None:
    """Token ids must be an integer (batch, seq) tensor with every id in [0, vocab_size)."""
    if ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise TypeError(f"{name} must be an integer tensor, got {ids.dtype}")
    if ids.dim() != 2:
        raise ValueError(f"{name} must have shape (batch, seq), got {tuple(ids.shape)}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise ValueError(
            f"{name} out of range: found ids in [{int(ids.min())}, {int(ids.max())}] "
            f"but the vocabulary has {vocab_size} entries"
        )


class TokenEmbedding(nn.Module):
    """Embedding(ids) * sqrt(d_model) (section 3.4).

    Rows start with variance 1/d_model (as in fairseq and tensor2tensor), so after the
    sqrt(d_model) factor each entry has unit variance, the scale of the sinusoidal code.
    """

    def __init__(self, vocab_size: int, d_model: int, scale: bool = True):
        super().__init__()
        self.vocab_size, self.d_model, self.scale = vocab_size, d_model, scale
        self.lut = nn.Embedding(vocab_size, d_model)
        nn.init.normal_(self.lut.weight, mean=0.0, std=d_model ** -0.5)

    @property
    def weight(self) -> nn.Parameter:
        return self.lut.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # ids (B, S) -> (B, S, d_model)
        check_token_ids(ids, self.vocab_size)
        x = self.lut(ids.long())  # nn.Embedding indexes with int32 and int64 only; uint8 and int16 are widened
        return x * math.sqrt(self.d_model) if self.scale else x


def sinusoidal_encoding(positions: torch.Tensor, d_model: int, base: float = 10000.0) -> torch.Tensor:
    """PE(pos, 2i) = sin(pos / base^(2i/d_model)), PE(pos, 2i+1) = cos(pos / base^(2i/d_model)).

    Computed in float64 for any positions (no table, so any length works).
    Shape: positions (S,) -> (S, d_model).
    """
    if d_model % 2:
        raise ValueError(f"sinusoidal encoding needs an even d_model, got {d_model}")
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (d_model/2,)
    inv_freq = base ** (-two_i / d_model)
    angles = positions.to(torch.float64)[:, None] * inv_freq[None, :]  # (S, d_model/2)
    pe = torch.empty(positions.shape[0], d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles)
    return pe


class SinusoidalPositionalEncoding(nn.Module):
    """The fixed sinusoidal code of section 3.5, with a configurable base."""

    def __init__(self, d_model: int, base: float = 10000.0):
        super().__init__()
        self.d_model, self.base = d_model, base

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        # positions (S,) -> (S, d_model)
        return sinusoidal_encoding(positions, self.d_model, self.base)


class LearnedPositionalEmbedding(nn.Module):
    """A trained table of max_len position vectors; positions past the table are an error."""

    def __init__(self, max_len: int, d_model: int):
        super().__init__()
        self.max_len = max_len
        self.table = nn.Embedding(max_len, d_model)
        nn.init.normal_(self.table.weight, mean=0.0, std=d_model ** -0.5)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        # positions (S,) -> (S, d_model)
        if positions.numel() and int(positions.max()) >= self.max_len:
            raise ValueError(
                f"position {int(positions.max())} is past the learned position table (max_len={self.max_len}); "
                "learned positions cannot extrapolate"
            )
        return self.table(positions)


class RotaryEmbedding(nn.Module):
    """RoPE (Su et al. 2021): rotate each pair (x_2i, x_2i+1) of a query or key by pos * theta_i.

    theta_i = base^(-2i/d_k); <RoPE(q, m), RoPE(k, n)> then depends on m - n only.
    """

    def __init__(self, d_k: int, base: float = 10000.0):
        super().__init__()
        if d_k % 2:
            raise ValueError(f"rotary embedding needs an even per-head width, got d_k={d_k}")
        self.d_k, self.base = d_k, base

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        # x (B, H, S, d_k), positions (S,) -> (B, H, S, d_k)
        two_i = torch.arange(0, self.d_k, 2, dtype=torch.float64)
        angles = positions.to(torch.float64)[:, None] * self.base ** (-two_i / self.d_k)  # (S, d_k/2)
        cos, sin = torch.cos(angles).to(x.dtype), torch.sin(angles).to(x.dtype)
        even, odd = x[..., 0::2], x[..., 1::2]  # (B, H, S, d_k/2)
        rotated = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1)  # (B, H, S, d_k/2, 2)
        return rotated.flatten(-2)


def _geometric_slopes(n: int) -> torch.Tensor:
    """2^(-8/n), 2^(-16/n), ..., 2^(-8): starts at 2^(-8/n) and uses it as the ratio. Shape (n,)."""
    return torch.pow(2.0, torch.arange(1, n + 1, dtype=torch.float64) * (-8.0 / n))


def alibi_slopes(h: int) -> torch.Tensor:
    """ALiBi's head slopes (Press et al. 2022, section 3 and their reference code).

    For h a power of two, the geometric sequence m_j = 2^(-8 j / h), j = 1..h. Otherwise the slopes of the
    largest power of two p < h, followed by the odd-numbered slopes of 2p (every other one, from the
    first) until there are h. Shape (h,).
    """
    p = 2 ** int(math.floor(math.log2(h)))
    slopes = _geometric_slopes(p)
    if p < h:
        slopes = torch.cat([slopes, _geometric_slopes(2 * p)[0::2][: h - p]])
    return slopes


class ALiBi(nn.Module):
    """Attention with linear biases (Press et al. 2022): score_ij -= m_head * |i - j|, slopes from alibi_slopes."""

    def __init__(self, h: int):
        super().__init__()
        self.register_buffer("slopes", alibi_slopes(h), persistent=False)  # (H,)

    def forward(self, q_positions: torch.Tensor, k_positions: torch.Tensor) -> torch.Tensor:
        # q_positions (S_q,), k_positions (S_k,) -> bias (H, S_q, S_k)
        distance = (q_positions[:, None] - k_positions[None, :]).abs().to(torch.float64)  # (S_q, S_k)
        return -self.slopes[:, None, None] * distance


class InputEmbedding(nn.Module):
    """Token embedding + absolute position code (+ token type), optional LayerNorm (BERT), then dropout.

    Rotary and ALiBi positions act inside attention, so for them (and for "none") nothing is added here.
    """

    def __init__(self, config: TransformerConfig, vocab_size: int, token: TokenEmbedding | None = None):
        super().__init__()
        self.token = token if token is not None else TokenEmbedding(vocab_size, config.d_model, config.scale_embedding)
        self.position: nn.Module | None = None
        if config.positional == "sinusoidal":
            self.position = SinusoidalPositionalEncoding(config.d_model, config.pe_base)
        elif config.positional == "learned":
            self.position = LearnedPositionalEmbedding(config.max_len, config.d_model)
        self.token_type = nn.Embedding(config.type_vocab_size, config.d_model) if config.type_vocab_size else None
        self.norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps) if config.embedding_norm else None
        self.dropout = nn.Dropout(config.p_drop)

    def forward(self, ids: torch.Tensor, position_offset: int = 0,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        # ids (B, S) -> (B, S, d_model)
        x = self.token(ids)
        if self.position is not None:
            positions = position_offset + torch.arange(ids.shape[1], device=ids.device)  # (S,)
            x = x + self.position(positions).to(x.dtype)[None]
        if self.token_type is not None:
            types = torch.zeros_like(ids) if token_type_ids is None else token_type_ids
            x = x + self.token_type(types)
        if self.norm is not None:
            x = self.norm(x)
        return self.dropout(x)
