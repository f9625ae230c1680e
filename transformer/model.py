"""The encoder-decoder Transformer (Vaswani et al. 2017, figure 1)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .config import TransformerConfig
from .embeddings import InputEmbedding, TokenEmbedding, check_token_ids
from .layers import DecoderLayer, EncoderLayer, LayerCache
from .masks import causal_mask, combine, key_padding_mask


class Encoder(nn.Module):
    """N encoder layers; pre-LN stacks end with a final LayerNorm (post-LN stacks already end in one)."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.n_encoder_layers))
        self.final_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps) if config.norm_placement == "pre" else None

    def forward(self, x: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
        # x (B, S, d_model), allowed (B, 1, 1, S) -> memory (B, S, d_model)
        for layer in self.layers:
            x = layer(x, allowed)
        return x if self.final_norm is None else self.final_norm(x)


@dataclass
class DecoderCache:
    """Everything incremental decoding keeps between steps: per-layer caches, target padding, position."""

    layers: list[LayerCache]
    key_allowed: torch.Tensor | None = None  # (B, T_seen) bool: which past target positions are real tokens
    offset: int = 0  # number of target positions already processed

    @classmethod
    def empty(cls, n_layers: int) -> DecoderCache:
        return cls(layers=[LayerCache() for _ in range(n_layers)])


class Decoder(nn.Module):
    """N decoder layers over a causally masked target; cross-attention reads the final encoder output."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.n_decoder_layers))
        self.final_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps) if config.norm_placement == "pre" else None

    def forward(self, y: torch.Tensor, memory: torch.Tensor, self_allowed: torch.Tensor | None,
                memory_allowed: torch.Tensor | None, cache: DecoderCache | None = None) -> torch.Tensor:
        # y (B, T, d_model), memory (B, S, d_model) -> (B, T, d_model)
        offset = 0 if cache is None else cache.offset
        for i, layer in enumerate(self.layers):
            y = layer(y, memory, self_allowed, memory_allowed, None if cache is None else cache.layers[i], offset)
        return y if self.final_norm is None else self.final_norm(y)


class Generator(nn.Module):
    """The pre-softmax linear transformation and log-softmax over the target vocabulary (section 3.4)."""

    def __init__(self, d_model: int, vocab_size: int):
        super().__init__()
        self.proj = nn.Linear(d_model, vocab_size, bias=False)  # weight (vocab, d_model), like an Embedding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x (B, T, d_model) -> log-probabilities (B, T, vocab)
        return torch.log_softmax(self.proj(x), dim=-1)


class Transformer(nn.Module):
    """Encoder-decoder Transformer with optional weight tying.

    Tying (section 3.4) shares one tensor, never a copy: "decoder" ties the target embedding to the
    pre-softmax linear; "three-way" also ties the source embedding (needs a shared vocabulary).
    Padding: pass boolean (B, S) masks, True at real tokens; when omitted and ``config.pad_id`` is
    set, tokens equal to pad_id are treated as padding.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        target_token = TokenEmbedding(config.tgt_vocab_size, config.d_model, config.scale_embedding)
        source_token = target_token if config.tying == "three-way" else None
        self.src_embed = InputEmbedding(config, config.src_vocab_size, source_token)
        self.tgt_embed = InputEmbedding(config, config.tgt_vocab_size, target_token)
        self.encoder, self.decoder = Encoder(config), Decoder(config)
        self.generator = Generator(config.d_model, config.tgt_vocab_size)
        if config.tying in ("decoder", "three-way"):
            self.generator.proj.weight = self.tgt_embed.token.weight  # the same Parameter object

    def _key_allowed(self, ids: torch.Tensor, key_allowed: torch.Tensor | None) -> torch.Tensor | None:
        # ids (B, S), key_allowed (B, S) bool or None -> (B, S) bool or None
        if key_allowed is not None:
            if key_allowed.dtype != torch.bool:
                raise TypeError(f"padding mask must be torch.bool (True = real token), got {key_allowed.dtype}")
            if key_allowed.shape != ids.shape:
                raise ValueError(f"padding mask shape {tuple(key_allowed.shape)} != token ids shape {tuple(ids.shape)}")
            return key_allowed
        return None if self.config.pad_id is None else ids != self.config.pad_id

    def encode(self, src: torch.Tensor, src_key_allowed: torch.Tensor | None = None) -> torch.Tensor:
        # src (B, S) -> memory (B, S, d_model)
        check_token_ids(src, self.config.src_vocab_size, "source token ids")
        _check_source_not_empty(src)
        allowed = self._key_allowed(src, src_key_allowed)
        return self.encoder(self.src_embed(src), None if allowed is None else key_padding_mask(allowed))

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor, src_key_allowed: torch.Tensor | None = None,
               tgt_key_allowed: torch.Tensor | None = None, cache: DecoderCache | None = None,
               src: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder states for the target tokens ``tgt``; with a cache, ``tgt`` holds only the new tokens.

        Shape: tgt (B, T_new), memory (B, S, d_model), src_key_allowed (B, S) -> (B, T_new, d_model).
        ``src`` may be given instead of src_key_allowed to derive the source padding from pad_id.
        """
        check_token_ids(tgt, self.config.tgt_vocab_size, "target token ids")
        offset = 0 if cache is None else cache.offset
        T_new = tgt.shape[1]
        key_allowed = self._key_allowed(tgt, tgt_key_allowed)
        if cache is not None and key_allowed is not None:
            past = cache.key_allowed if cache.key_allowed is not None else key_allowed.new_ones(tgt.shape[0], offset)
            key_allowed = cache.key_allowed = torch.cat([past, key_allowed], dim=1)  # (B, T_seen)
        self_allowed = combine(causal_mask(T_new, offset + T_new, offset, tgt.device),
                               None if key_allowed is None else key_padding_mask(key_allowed))
        if src_key_allowed is None and src is not None:
            src_key_allowed = self._key_allowed(src, None)
        memory_allowed = None if src_key_allowed is None else key_padding_mask(src_key_allowed)
        y = self.tgt_embed(tgt, position_offset=offset)
        y = self.decoder(y, memory, self_allowed, memory_allowed, cache)
        if cache is not None:
            cache.offset += T_new
        return y

    def new_cache(self) -> DecoderCache:
        return DecoderCache.empty(len(self.decoder.layers))

    def forward(self, src: torch.Tensor, tgt: torch.Tensor, src_key_allowed: torch.Tensor | None = None,
                tgt_key_allowed: torch.Tensor | None = None) -> torch.Tensor:
        # src (B, S), tgt (B, T) -> log-probabilities (B, T, tgt_vocab)
        if src.dim() != 2 or tgt.dim() != 2 or src.shape[0] != tgt.shape[0]:
            raise ValueError(
                f"src and tgt must be (batch, seq) with the same batch, got {tuple(src.shape)} and {tuple(tgt.shape)}")
        src_key_allowed = self._key_allowed(src, src_key_allowed)
        memory = self.encode(src, src_key_allowed)
        return self.generator(self.decode(tgt, memory, src_key_allowed, tgt_key_allowed))


def _check_source_not_empty(src: torch.Tensor) -> None:
    # src (B, S): with S = 0 every cross-attention query would have no key, and the decoder would read nothing
    if src.shape[1] == 0:
        raise ValueError(f"source sequence is empty (shape {tuple(src.shape)}): there is nothing to encode or attend to")
