"""A compact, paper-faithful encoder-decoder Transformer (Vaswani et al. 2017, "Attention Is All You Need").

Shape glossary used in every comment:
    B  batch size            S  source length (keys of the encoder, memory length)
    T  target length         S_q, S_k  query and key lengths of one attention call
    H  heads (h)             D  d_model            d_k  per-head width = d_model / h
    V  vocabulary size

Mask convention: boolean ``allowed``, True where a query may attend to a key (as in
``torch.nn.functional.scaled_dot_product_attention``).

Deviations from the paper, said out loud:
    * Embeddings start with std d_model^-0.5 (the paper does not say; fairseq and tensor2tensor do this).
    * The pre-softmax linear has no bias, so that it can be tied to the embeddings.
    * A query whose keys are all masked returns zeros (the paper never meets one).
    * Pre-LN, rotary, ALiBi, learned positions, GELU, shared-QK and token types are options, off by default.
"""

from .attention import (
    AdditiveAttention,
    KVCache,
    MultiHeadAttention,
    scaled_dot_product_attention,
)
from .config import TransformerConfig
from .decoding import Generated, greedy_decode
from .embeddings import (
    ALiBi,
    InputEmbedding,
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    TokenEmbedding,
    sinusoidal_encoding,
)
from .layers import (
    DecoderLayer,
    EncoderLayer,
    PositionwiseFeedForward,
    ResidualSublayer,
)
from .masks import (
    causal_mask,
    combine,
    key_padding_mask,
    padding_mask_from_ids,
    padding_mask_from_lengths,
)
from .model import Decoder, DecoderCache, Encoder, Generator, Transformer
from .tokenisers import ByteBPE, WordPiece, train_bpe, train_wordpiece
from .training import (
    LabelSmoothingLoss,
    make_optimizer,
    noam_rate,
    noam_scheduler,
    teacher_forcing_loss,
    teacher_forcing_pair,
)

__all__ = [
    "ALiBi", "AdditiveAttention", "ByteBPE", "Decoder", "DecoderCache", "DecoderLayer", "Encoder", "EncoderLayer",
    "Generated", "Generator", "InputEmbedding", "KVCache", "LabelSmoothingLoss", "LearnedPositionalEmbedding",
    "MultiHeadAttention", "PositionwiseFeedForward", "ResidualSublayer", "RotaryEmbedding",
    "SinusoidalPositionalEncoding", "TokenEmbedding", "Transformer", "TransformerConfig", "WordPiece",
    "causal_mask",
    "combine", "greedy_decode", "key_padding_mask", "make_optimizer", "noam_rate", "noam_scheduler",
    "padding_mask_from_ids", "padding_mask_from_lengths", "scaled_dot_product_attention", "sinusoidal_encoding",
    "teacher_forcing_loss", "teacher_forcing_pair", "train_bpe", "train_wordpiece",
]
