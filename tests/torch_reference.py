"""Copy the project's weights into PyTorch's own Transformer modules (the reference oracle).

PyTorch packs W^Q, W^K, W^V into one ``in_proj_weight`` (3 D, D) and names the feed-forward
``linear1``/``linear2`` and the norms ``norm1..3``; everything else maps one to one.
"""

from __future__ import annotations

import torch
from torch import nn

from transformer import MultiHeadAttention, TransformerConfig
from transformer.model import Decoder, Encoder


@torch.no_grad()
def copy_attention(ours: MultiHeadAttention, theirs: nn.MultiheadAttention) -> None:
    theirs.in_proj_weight.copy_(torch.cat([ours.w_q.weight, ours.w_k.weight, ours.w_v.weight]))
    theirs.in_proj_bias.copy_(torch.cat([ours.w_q.bias, ours.w_k.bias, ours.w_v.bias]))
    theirs.out_proj.weight.copy_(ours.w_o.weight)
    theirs.out_proj.bias.copy_(ours.w_o.bias)


@torch.no_grad()
def _copy_feed_forward_and_norms(ours, theirs, blocks) -> None:
    theirs.linear1.load_state_dict(ours.feed_forward.w_1.state_dict())
    theirs.linear2.load_state_dict(ours.feed_forward.w_2.state_dict())
    for i, block in enumerate(blocks, start=1):
        getattr(theirs, f"norm{i}").load_state_dict(block.norm.state_dict())


def torch_encoder(config: TransformerConfig, ours: Encoder) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        config.d_model, config.h, config.d_ff, dropout=0.0, activation=config.activation,
        layer_norm_eps=config.layer_norm_eps, batch_first=True, norm_first=config.norm_placement == "pre")
    final = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps) if ours.final_norm is not None else None
    theirs = nn.TransformerEncoder(layer, config.n_encoder_layers, norm=final, enable_nested_tensor=False)
    theirs = theirs.to(torch.float64).eval()
    for mine, other in zip(ours.layers, theirs.layers):
        copy_attention(mine.self_attn, other.self_attn)
        _copy_feed_forward_and_norms(mine, other, [mine.attn_block, mine.ff_block])
    if final is not None:
        theirs.norm.load_state_dict(ours.final_norm.state_dict())
    return theirs


def torch_decoder(config: TransformerConfig, ours: Decoder) -> nn.TransformerDecoder:
    layer = nn.TransformerDecoderLayer(
        config.d_model, config.h, config.d_ff, dropout=0.0, activation=config.activation,
        layer_norm_eps=config.layer_norm_eps, batch_first=True, norm_first=config.norm_placement == "pre")
    final = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps) if ours.final_norm is not None else None
    theirs = nn.TransformerDecoder(layer, config.n_decoder_layers, norm=final).to(torch.float64).eval()
    for mine, other in zip(ours.layers, theirs.layers):
        copy_attention(mine.self_attn, other.self_attn)
        copy_attention(mine.cross_attn, other.multihead_attn)
        _copy_feed_forward_and_norms(mine, other, [mine.self_block, mine.cross_block, mine.ff_block])
    if final is not None:
        theirs.norm.load_state_dict(ours.final_norm.state_dict())
    return theirs
