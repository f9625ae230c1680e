"""Model and training configuration, with the paper's presets (Vaswani et al. 2017, Table 3)."""

from __future__ import annotations

from dataclasses import dataclass, replace

ACTIVATIONS = ("relu", "gelu")
NORM_PLACEMENTS = ("post", "pre")
POSITIONAL_KINDS = ("sinusoidal", "learned", "rope", "alibi", "none")
TYING_MODES = ("none", "decoder", "three-way")
QK_PROJECTIONS = ("separate", "shared", "none")


@dataclass(frozen=True)
class TransformerConfig:
    """Hyper-parameters of the encoder-decoder Transformer.

    Defaults are the paper's base model; `base()`, `big()` and `tiny()` are presets.
    """

    src_vocab_size: int = 37000
    tgt_vocab_size: int = 37000
    d_model: int = 512          # width of every residual stream
    h: int = 8                  # attention heads; d_k = d_v = d_model / h
    d_ff: int = 2048            # inner width of the position-wise feed-forward network
    n_encoder_layers: int = 6   # N in the paper
    n_decoder_layers: int = 6
    p_drop: float = 0.1         # dropout on sub-layer outputs and on embedding + position sums
    attn_dropout: float = 0.0   # optional dropout on attention weights (not in the paper)
    activation: str = "relu"    # "relu" (paper) or "gelu" (BERT)
    norm_placement: str = "post"  # "post": LayerNorm(x + Sublayer(x)) as in the paper; "pre": x + Sublayer(LayerNorm(x))
    layer_norm_eps: float = 1e-5
    positional: str = "sinusoidal"  # "sinusoidal", "learned", "rope", "alibi" or "none"
    pe_base: float = 10000.0    # base of the sinusoidal and rotary wavelengths
    max_len: int = 512          # size of the learned position table (only used by "learned")
    tying: str = "three-way"    # "none", "decoder" (target embedding = generator), "three-way" (+ source embedding)
    qk_projection: str = "separate"  # "separate" W_q, W_k; "shared" W_q = W_k (Reformer); "none": Q = K = input
    scale_embedding: bool = True     # multiply token embeddings by sqrt(d_model) (section 3.4)
    embedding_norm: bool = False     # LayerNorm after the embedding sum (BERT)
    type_vocab_size: int = 0         # segment (token-type) embeddings, 0 = none (BERT uses 2)
    pad_id: int | None = 0           # token id treated as padding when no explicit mask is given
    # Training hyper-parameters (section 5).
    label_smoothing: float = 0.1
    warmup_steps: int = 4000
    adam_betas: tuple[float, float] = (0.9, 0.98)
    adam_eps: float = 1e-9

    def __post_init__(self) -> None:
        positive = ("src_vocab_size", "tgt_vocab_size", "d_model", "h", "d_ff", "max_len", "warmup_steps")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("n_encoder_layers", "n_decoder_layers", "type_vocab_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.d_model % self.h != 0:
            raise ValueError(f"d_model={self.d_model} is not divisible by h={self.h} heads")
        for name in ("p_drop", "attn_dropout", "label_smoothing"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_choice("norm_placement", self.norm_placement, NORM_PLACEMENTS)
        _check_choice("positional", self.positional, POSITIONAL_KINDS)
        _check_choice("tying", self.tying, TYING_MODES)
        _check_choice("qk_projection", self.qk_projection, QK_PROJECTIONS)
        if self.tying == "three-way" and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError(
                "three-way tying needs a shared vocabulary: "
                f"src_vocab_size={self.src_vocab_size} != tgt_vocab_size={self.tgt_vocab_size}"
            )
        if self.pad_id is not None and not 0 <= self.pad_id < min(self.src_vocab_size, self.tgt_vocab_size):
            raise ValueError(f"pad_id={self.pad_id} is outside the vocabulary")
        for name in ("pe_base", "layer_norm_eps", "adam_eps"):
            _check_positive(name, getattr(self, name))
        _check_adam_betas(self.adam_betas)
        self._check_positional_width()

    def _check_positional_width(self) -> None:
        """Sinusoids and rotations pair up dimensions (2i, 2i + 1), so those widths must be even."""
        if self.positional == "sinusoidal" and self.d_model % 2:
            raise ValueError(f"sinusoidal positions need an even d_model, got d_model={self.d_model}")
        if self.positional == "rope" and self.d_k % 2:
            raise ValueError(f"rotary positions need an even per-head width, got d_k={self.d_k} "
                             f"(d_model={self.d_model}, h={self.h})")

    @property
    def d_k(self) -> int:
        """Per-head width of queries, keys and values (d_k = d_v = d_model / h)."""
        return self.d_model // self.h

    @classmethod
    def base(cls, vocab_size: int = 37000, **overrides) -> TransformerConfig:
        """Table 3, "base": N=6, d_model=512, d_ff=2048, h=8, P_drop=0.1, eps_ls=0.1."""
        return cls(src_vocab_size=vocab_size, tgt_vocab_size=vocab_size, **overrides)

    @classmethod
    def big(cls, vocab_size: int = 37000, **overrides) -> TransformerConfig:
        """Table 3, "big": N=6, d_model=1024, d_ff=4096, h=16, P_drop=0.3 (0.1 for EN-FR)."""
        settings = dict(d_model=1024, d_ff=4096, h=16, p_drop=0.3)
        settings.update(overrides)
        return cls(src_vocab_size=vocab_size, tgt_vocab_size=vocab_size, **settings)

    @classmethod
    def tiny(cls, vocab_size: int = 11, **overrides) -> TransformerConfig:
        """A model small enough for property tests: 2 layers, d_model 8, 2 heads, no dropout."""
        settings = dict(d_model=8, h=2, d_ff=16, n_encoder_layers=2, n_decoder_layers=2, p_drop=0.0, max_len=64)
        settings.update(overrides)
        return cls(src_vocab_size=vocab_size, tgt_vocab_size=vocab_size, **settings)

    def with_(self, **changes) -> TransformerConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(choices)}")


def _check_positive(name: str, value: float) -> None:
    """A base of 0 or a negative epsilon gives NaN at the first forward or step, not an error."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def _check_adam_betas(betas: tuple[float, float]) -> None:
    """Adam's moment decay rates: beta = 1 never forgets, a negative beta is no average (Kingma & Ba 2015, section 2)."""
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"adam_betas must be a pair (beta_1, beta_2), got {betas!r}")
    if not all(isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"adam_betas must both be in [0, 1), got {tuple(betas)!r}")
