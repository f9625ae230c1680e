"""The catalogue of mutants: bugs that have happened in real Transformer code, as source patches.

Each mutant is one bug a person could write, expressed as one or more `Patch` es: a file of the
repository, a snippet of its code that must occur exactly once in the pristine file, and its
replacement. Snippets are located by their code tokens (`mutation.anchor`), so comments, docstrings
and layout in ``transformer/`` may change freely; a snippet ending in a newline replaces whole lines.
Patches of one mutant are applied in order, each to the result of the previous one. A patch whose old
text is missing or ambiguous is an error of the runner, never a silent skip: the code changed and the
catalogue must follow it.

No mutant here is equivalent: each changes what the code computes for some input the suite can draw
(the note after a description says which inputs, where that is not obvious). Left out as equivalent
here: a -inf fill with the post-softmax zeroing kept. The fully masked row's softmax is NaN, but the
zeroing hides it in the output and the backward of the pre-softmax masked_fill zeroes the NaN
gradient at exactly those positions, so outputs and gradients are unchanged (checked with torch 2.13).

Citations name a public issue or pull request where the same bug was reported in real code; ``None``
where no thread was found.
"""

from __future__ import annotations

from dataclasses import dataclass, field

AREAS = {
    "scaling": "scaling and softmax",
    "masks": "masks",
    "heads": "heads",
    "enc-dec": "encoder-decoder wiring",
    "embeddings": "embeddings and positions",
    "norm": "norm, residual, dropout",
    "decoding": "incremental decoding",
    "training": "training",
    "tokenisers": "tokenisers",
}

# Substrings of test node ids likely to kill a mutant of each area: those tests run first (fail fast).
AREA_HINTS = {
    "scaling": ("torch_parity", "test_attention", "scale"),
    "masks": ("mask", "padding", "causal"),
    "heads": ("torch_parity", "head"),
    "enc-dec": ("cross", "teacher", "greedy", "torch_parity"),
    "embeddings": ("embed", "positional", "tying", "tie"),
    "norm": ("torch_parity", "norm", "residual", "dropout"),
    "decoding": ("test_decoding", "cache", "greedy"),
    "training": ("smooth", "noam", "warmup", "schedule"),
    "tokenisers": ("bpe", "wordpiece", "tokeni"),
}


@dataclass(frozen=True)
class Patch:
    """Replace the code of ``old`` (which must occur exactly once) by ``new`` in ``file`` (relative to the repo root)."""

    file: str
    old: str
    new: str


@dataclass(frozen=True)
class Mutant:
    id: str
    area: str
    description: str
    patches: tuple[Patch, ...]
    citation: str | None = None
    hints: tuple[str, ...] = field(default=())

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.file for p in self.patches))


ATTN, MASKS, EMB, LAYERS = "transformer/attention.py", "transformer/masks.py", "transformer/embeddings.py", "transformer/layers.py"
MODEL, DECODING, TRAINING, TOK = "transformer/model.py", "transformer/decoding.py", "transformer/training.py", "transformer/tokenisers.py"

# Anchors: lines of the pristine sources that several mutants replace (each mutant is applied alone).
SCORES = "    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (..., S_q, S_k)\n"
FILL = ("        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)\n"
        "    weights = torch.softmax(scores, dim=-1)  # (..., S_q, S_k)\n")
ZEROING = ("    if allowed is not None:\n"
           "        weights = weights.masked_fill(~allowed, 0.0)\n"
           "    if dropout_p > 0.0:\n")
KEY_PADDING = "    return key_allowed[:, None, None, :]\n"
CAUSAL = "    return (key_positions <= query_positions)[None, None]  # (1, 1, S_q, S_k)\n"
CROSS = "        y = self.cross_block(y, lambda z: self.cross_attn(z, memory, memory, memory_allowed, cross_cache))\n"
ENCODER_ATTN = "        x = self.attn_block(x, lambda y: self.self_attn(y, y, y, allowed))\n"
POST_LN = "        return self.norm(x + self.dropout(sublayer(x)))\n"
RESIDUAL_NORM = "        self.norm = nn.LayerNorm(d_model, eps=eps)\n"
RESIDUAL_DROPOUT = "        self.dropout = nn.Dropout(p_drop)\n"
LAYERS_HEAD = 'ACTIVATION_FUNCTIONS = {"relu": F.relu, "gelu": F.gelu}\n'
CACHE_CAT = ("            self.keys = torch.cat([self.keys, k], dim=2)\n"
             "            self.values = torch.cat([self.values, v], dim=2)\n")
PE_POSITIONS = ("            positions = position_offset + torch.arange(ids.shape[1], device=ids.device)  # (S,)\n"
                "            x = x + self.position(positions).to(x.dtype)[None]\n")


def _fill(value: str) -> Patch:
    """The pre-softmax fill of masked scores, with another fill value."""
    return Patch(ATTN, FILL, FILL.replace("torch.finfo(scores.dtype).min", value))


def _layer_norm_class(name: str, body: str) -> Patch:
    """Insert a hand-written normalisation class after the imports of layers.py."""
    return Patch(LAYERS, LAYERS_HEAD, LAYERS_HEAD + "\n\n" + f"class {name}(nn.Module):\n" + body)


_HAND_LN_INIT = (
    '    """LayerNorm written out by hand (the library one hides the formula)."""\n\n'
    "    def __init__(self, d_model: int, eps: float = 1e-5):\n"
    "        super().__init__()\n"
    "        self.normalized_shape, self.eps = (d_model,), eps\n"
    "        self.weight = nn.Parameter(torch.ones(d_model))\n"
    "        self.bias = nn.Parameter(torch.zeros(d_model))\n\n"
)

CATALOGUE: tuple[Mutant, ...] = (
    # ------------------------------------------------------------------ scaling and softmax
    Mutant(
        "scale-sqrt-d-model", "scaling",
        "multi-head attention passes a scale computed from d_model, 1/sqrt(d_model) instead of 1/sqrt(d_k) "
        "(the functional default stays right; differs whenever h >= 2)",
        (Patch(ATTN, "    training: bool = False,\n) -> tuple[torch.Tensor, torch.Tensor]:\n",
               "    training: bool = False,\n    scale: float | None = None,\n) -> tuple[torch.Tensor, torch.Tensor]:\n"),
         Patch(ATTN, SCORES, "    scores = q @ k.transpose(-2, -1) * (1 / math.sqrt(d_k) if scale is None else scale)\n"),
         Patch(ATTN, "q, k, v, allowed, bias=bias, dropout_p=self.attn_dropout, training=self.training)",
               "q, k, v, allowed, bias=bias, dropout_p=self.attn_dropout, training=self.training,\n"
               "            scale=1 / math.sqrt(self.d_model))")),
        "https://github.com/karpathy/ng-video-lecture/pull/6",
    ),
    Mutant(
        "scale-missing", "scaling", "scores are Q K^T with no 1/sqrt(d_k) factor",
        (Patch(ATTN, SCORES, "    scores = q @ k.transpose(-2, -1)  # (..., S_q, S_k)\n"),),
        "https://github.com/Graylab/DL4Proteins-notebooks/issues/12",
    ),
    Mutant(
        "scale-one-over-d-k", "scaling", "scores divided by d_k instead of sqrt(d_k) (differs for d_k >= 2)",
        (Patch(ATTN, SCORES, "    scores = q @ k.transpose(-2, -1) / d_k  # (..., S_q, S_k)\n"),),
        "https://github.com/charliezchen/scaling-matrix-preconditioning/issues/2",
    ),
    Mutant(
        "scale-inverted", "scaling", "scores multiplied by sqrt(d_k) instead of divided (differs for d_k >= 2)",
        (Patch(ATTN, SCORES, "    scores = q @ k.transpose(-2, -1) * math.sqrt(d_k)  # (..., S_q, S_k)\n"),),
    ),
    Mutant(
        "softmax-over-queries", "scaling", "softmax taken over the query axis (dim=-2) instead of the key axis",
        (Patch(ATTN, FILL, FILL.replace("torch.softmax(scores, dim=-1)", "torch.softmax(scores, dim=-2)")),),
        "https://github.com/PetrochukM/PyTorch-NLP/issues/2",
    ),
    # ------------------------------------------------------------------ masks
    Mutant(
        "mask-after-softmax", "masks",
        "masked keys are zeroed after the softmax but not filled before it, so the weights of a "
        "partly masked row no longer sum to one",
        (Patch(ATTN, "        check_mask(allowed, scores.shape)\n" + FILL,
               "        check_mask(allowed, scores.shape)\n    weights = torch.softmax(scores, dim=-1)  # (..., S_q, S_k)\n"),),
        "https://github.com/aimagelab/meshed-memory-transformer/issues/27",
    ),
    Mutant(
        "mask-multiplicative", "masks", "a multiplicative 0/1 mask: masked scores become 0 instead of -inf",
        (Patch(ATTN, FILL, FILL.replace("scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)", "scores * allowed")),),
        "https://github.com/jadore801120/attention-is-all-you-need-pytorch/issues/16",
    ),
    Mutant(
        "mask-polarity-flipped", "masks",
        "the boolean mask read as True = blocked (nn.MultiheadAttention's convention) in the fill and the zeroing",
        (Patch(ATTN, FILL, FILL.replace("masked_fill(~allowed", "masked_fill(allowed")),
         Patch(ATTN, ZEROING, ZEROING.replace("masked_fill(~allowed", "masked_fill(allowed"))),
        "https://github.com/pytorch/pytorch/pull/39321",
    ),
    Mutant(
        "mask-bool-added-as-bias", "masks",
        "float/bool confusion: the 0/1 keep-mask is added to the scores as if it were an additive 0/-inf mask",
        (Patch(ATTN, FILL, FILL.replace("scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)", "scores + allowed")),),
        "https://github.com/kzl/decision-transformer/issues/30",
    ),
    Mutant(
        "mask-fill-result-discarded", "masks", "the out-of-place masked_fill's result is thrown away (no assignment)",
        (Patch(ATTN, FILL, FILL.replace("        scores = scores.masked_fill(", "        scores.masked_fill(")),),
        "https://github.com/lucidrains/flamingo-pytorch/issues/10",
    ),
    Mutant(
        "causal-excludes-diagonal", "masks", "causal mask off by one: a query may not attend to its own position",
        (Patch(MASKS, CAUSAL, CAUSAL.replace("<=", "<")),),
        "https://github.com/TransformerLensOrg/TransformerLens/issues/284",
    ),
    Mutant(
        "causal-admits-next-token", "masks", "causal mask off by one: a query also sees the next position",
        (Patch(MASKS, CAUSAL, CAUSAL.replace("<= query_positions", "<= query_positions + 1")),),
        "https://github.com/RVC-Boss/GPT-SoVITS/issues/965",
    ),
    Mutant(
        "causal-skipped-with-cache", "masks",
        "no causal mask on the cached path (fine for one new token, wrong for multi-token chunks)",
        (Patch(MODEL, "        self_allowed = combine(causal_mask(T_new, offset + T_new, offset, tgt.device),\n",
               "        self_allowed = combine(None if cache is not None else causal_mask(T_new, offset + T_new, offset, tgt.device),\n"),),
        "https://github.com/ml-explore/mlx-lm/pull/93",
    ),
    Mutant(
        "padding-mask-over-queries", "masks",
        "the padding mask is lifted to (B, 1, S, 1): it broadcasts over queries instead of keys",
        (Patch(MASKS, KEY_PADDING, "    return key_allowed[:, None, :, None]\n"),),
        "https://github.com/pytorch/pytorch/issues/41508",
    ),
    Mutant(
        "padding-mask-batch-on-head-axis", "masks",
        "per-example mask misaligned with the layout: the batch axis lands on the head axis, (1, B, 1, S) "
        "(silent when batch == heads, wrong masks per example; refused by shape otherwise unless B == 1)",
        (Patch(MASKS, KEY_PADDING, "    return key_allowed[None, :, None, :]\n"),),
        "https://github.com/lsdefine/attention-is-all-you-need-keras/issues/36",
    ),
    Mutant(
        "encoder-ignores-padding", "masks", "the encoder's self-attention is called without the source padding mask",
        (Patch(LAYERS, ENCODER_ATTN, ENCODER_ATTN.replace("self.self_attn(y, y, y, allowed)", "self.self_attn(y, y, y)")),),
        "https://github.com/facebookresearch/fairseq/issues/318",
    ),
    Mutant(
        "fill-minus-1e9", "masks", "a fixed -1e9 fill instead of finfo(dtype).min: overflows float16",
        (_fill("-1e9"),),
        "https://github.com/NVIDIA/apex/issues/1052",
    ),
    Mutant(
        "fully-masked-row-uniform", "masks",
        "no zeroing after the softmax: a fully masked row spreads its weight uniformly over padding",
        (Patch(ATTN, ZEROING, "    if dropout_p > 0.0:\n"),),
        "https://github.com/pytorch/pytorch/issues/160064",
    ),
    Mutant(
        "fully-masked-row-nan", "masks", "-inf fill and no zeroing: a fully masked row gives NaN (as nn.MultiheadAttention)",
        (_fill('float("-inf")'), Patch(ATTN, ZEROING, "    if dropout_p > 0.0:\n")),
        "https://github.com/pytorch/pytorch/issues/41508",
    ),
    # ------------------------------------------------------------------ heads
    Mutant(
        "split-heads-without-transpose", "heads", "heads split by view(B, H, S, d_k) without the transpose",
        (Patch(ATTN, "        return x.view(B, S, self.h, self.d_k).transpose(1, 2)\n",
               "        return x.view(B, self.h, S, self.d_k)\n"),),
        "https://github.com/reczoo/FuxiCTR/issues/30",
    ),
    Mutant(
        "merge-heads-without-transpose", "heads", "heads merged by reshape(B, S, D) without the transpose",
        (Patch(ATTN, "        return x.transpose(1, 2).reshape(B, S, self.d_model)\n",
               "        return x.reshape(B, S, self.d_model)\n"),),
        "https://github.com/jsbaan/transformer-from-scratch/pull/6",
    ),
    # ------------------------------------------------------------------ encoder-decoder wiring
    Mutant(
        "cross-attention-target-mask", "enc-dec", "cross-attention is given the decoder's causal/target mask",
        (Patch(LAYERS, CROSS, CROSS.replace("memory_allowed, cross_cache", "self_allowed, cross_cache")),),
        "https://github.com/joeynmt/joeynmt/issues/151",
    ),
    Mutant(
        "cross-attention-without-source-mask", "enc-dec", "cross-attention attends to source padding (no memory mask)",
        (Patch(LAYERS, CROSS, CROSS.replace("memory_allowed, cross_cache", "None, cross_cache")),),
        "https://github.com/facebookresearch/fairseq/issues/537",
    ),
    Mutant(
        "cross-attention-kv-from-decoder", "enc-dec", "cross-attention takes keys and values from the decoder, not the encoder",
        (Patch(LAYERS, CROSS, CROSS.replace("self.cross_attn(z, memory, memory,", "self.cross_attn(z, z, z,")),),
        "https://github.com/OpenNMT/OpenNMT-py/issues/882",
    ),
    Mutant(
        "decoder-input-not-shifted", "enc-dec",
        "teacher forcing without the shift: the labels are the decoder's own input tokens",
        (Patch(TRAINING, "    return tgt[:, :-1], tgt[:, 1:]\n", "    return tgt[:, :-1], tgt[:, :-1]\n"),),
        "https://github.com/code-gen/cscg/issues/4",
    ),
    Mutant(
        "greedy-reads-first-position", "enc-dec",
        "greedy decoding takes the next token from the first position's state instead of the last "
        "(same on the cached path, where one state comes back; wrong when recomputing the prefix)",
        (Patch(DECODING, "        next_token = model.generator(states[:, -1:]).argmax(dim=-1)  # (B, 1)\n",
               "        next_token = model.generator(states[:, :1]).argmax(dim=-1)  # (B, 1)\n"),),
    ),
    Mutant(
        "greedy-bos-read-as-padding", "decoding",
        "greedy decoding derives the target mask from the token ids, so a BOS (or a generated token) equal to "
        "the pad id is read as padding (differs when bos_id == pad_id)",
        (Patch(DECODING, "        states = model.decode(fresh, memory, src_key_allowed, real, cache=cache)  # (B, *, d_model)\n",
               "        states = model.decode(fresh, memory, src_key_allowed, cache=cache)  # (B, *, d_model)\n"),),
    ),
    Mutant(
        "greedy-no-padding-after-eos", "decoding",
        "a row that has produced EOS keeps generating: the tokens after its EOS are not replaced by the pad id",
        (Patch(DECODING, "            next_token = next_token.masked_fill(finished[:, None], pad_id)\n", ""),),
    ),
    # ------------------------------------------------------------------ embeddings and positions
    Mutant(
        "tying-by-copy", "embeddings", "the generator gets a copy of the embedding matrix, not the same Parameter",
        (Patch(MODEL, "            self.generator.proj.weight = self.tgt_embed.token.weight  # the same Parameter object\n",
               "            self.generator.proj.weight = nn.Parameter(self.tgt_embed.token.weight.detach().clone())\n"),),
        "https://github.com/mosaicml/examples/pull/11",
    ),
    Mutant(
        "embedding-not-scaled", "embeddings", "token embeddings are not multiplied by sqrt(d_model)",
        (Patch(EMB, "        return x * math.sqrt(self.d_model) if self.scale else x\n", "        return x\n"),),
        "https://github.com/SamLynnEvans/Transformer/issues/10",
    ),
    Mutant(
        "pe-exponent-i-not-2i", "embeddings", "sinusoid frequencies use i/d_model instead of 2i/d_model",
        (Patch(EMB, "    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (d_model/2,)\n",
               "    two_i = torch.arange(0, d_model // 2, dtype=torch.float64)  # (d_model/2,)\n"),),
        "https://github.com/jadore801120/attention-is-all-you-need-pytorch/issues/32",
    ),
    Mutant(
        "pe-base-log10", "embeddings",
        "log10 where the natural log belongs: frequencies exp(-2i log10(base)/d), an effective base of base^(1/ln 10)",
        (Patch(EMB, "    inv_freq = base ** (-two_i / d_model)\n",
               "    inv_freq = torch.exp(-two_i * math.log10(base) / d_model)\n"),),
        "https://github.com/maxjcohen/transformer/issues/62",
    ),
    Mutant(
        "pe-on-batch-axis", "embeddings",
        "the (S, B, D) tutorial code on (B, S, D) inputs: each sequence gets the code of its batch index, "
        "the same row at every position",
        (Patch(EMB, PE_POSITIONS, PE_POSITIONS.replace("ids.shape[1]", "ids.shape[0]").replace(".to(x.dtype)[None]", ".to(x.dtype)[:, None]")),),
        "https://github.com/AkiRusProd/numpy-transformer/issues/1",
    ),
    # ------------------------------------------------------------------ norm, residual, dropout
    Mutant(
        "layernorm-over-sequence", "norm", "a hand-written LayerNorm that normalises over the sequence axis",
        (_layer_norm_class("_LayerNorm", _HAND_LN_INIT +
                           "    def forward(self, x: torch.Tensor) -> torch.Tensor:\n"
                           "        mean = x.mean(1, keepdim=True)\n"
                           "        var = x.var(1, unbiased=False, keepdim=True)\n"
                           "        return self.weight * (x - mean) / torch.sqrt(var + self.eps) + self.bias\n"),
         Patch(LAYERS, RESIDUAL_NORM, "        self.norm = _LayerNorm(d_model, eps=eps)\n")),
        "https://github.com/allenai/allennlp/pull/953",
    ),
    Mutant(
        "batchnorm-not-layernorm", "norm", "BatchNorm over the features (statistics across the batch) in LayerNorm's place",
        (Patch(LAYERS, LAYERS_HEAD, LAYERS_HEAD + "\n\nclass _BatchNorm(nn.BatchNorm1d):\n"
               "    def forward(self, x: torch.Tensor) -> torch.Tensor:\n"
               "        return super().forward(x.transpose(1, 2)).transpose(1, 2)  # BatchNorm1d wants (B, D, S)\n"),
         Patch(LAYERS, RESIDUAL_NORM, "        self.norm = _BatchNorm(d_model, eps=eps)\n")),
    ),
    Mutant(
        "layernorm-unbiased-variance", "norm",
        "a hand-written LayerNorm with the unbiased variance (divides by d_model - 1), as the annotated transformer",
        (_layer_norm_class("_LayerNorm", _HAND_LN_INIT +
                           "    def forward(self, x: torch.Tensor) -> torch.Tensor:\n"
                           "        mean = x.mean(-1, keepdim=True)\n"
                           "        var = x.var(-1, keepdim=True)\n"
                           "        return self.weight * (x - mean) / torch.sqrt(var + self.eps) + self.bias\n"),
         Patch(LAYERS, RESIDUAL_NORM, "        self.norm = _LayerNorm(d_model, eps=eps)\n")),
        "https://github.com/harvardnlp/annotated-transformer/pull/119",
    ),
    Mutant(
        "residual-missing", "norm", "post-LN sub-layer without its residual: LayerNorm(Dropout(Sublayer(x)))",
        (Patch(LAYERS, POST_LN, "        return self.norm(self.dropout(sublayer(x)))\n"),),
        "https://github.com/kyegomez/BitNet/issues/32",
    ),
    Mutant(
        "residual-doubled", "norm",
        "the encoder's attention sub-layer adds its input itself and the wrapper adds it again: LN(2x + Attn(x))",
        (Patch(LAYERS, ENCODER_ATTN, ENCODER_ATTN.replace("lambda y: self.self_attn(", "lambda y: y + self.self_attn(")),),
    ),
    Mutant(
        "dropout-active-in-eval", "norm",
        "functional dropout without training=self.training on the post-LN residual path: it stays on in eval mode "
        "(differs when p_drop > 0)",
        (Patch(LAYERS, POST_LN, "        return self.norm(x + F.dropout(sublayer(x), self.dropout.p))\n"),),
        "https://github.com/pytorch/pytorch/issues/26338",
    ),
    Mutant(
        "dropout-without-rescale", "norm",
        "a hand-written dropout on the residual branch that zeroes with probability p but forgets the 1/(1-p) "
        "rescaling (differs in training mode with p_drop > 0)",
        (Patch(LAYERS, LAYERS_HEAD, LAYERS_HEAD + "\n\nclass _Dropout(nn.Dropout):\n"
               "    def forward(self, x: torch.Tensor) -> torch.Tensor:\n"
               "        if not self.training or self.p == 0.0:\n"
               "            return x\n"
               "        return x * (torch.rand_like(x) >= self.p)\n"),
         Patch(LAYERS, RESIDUAL_DROPOUT, "        self.dropout = _Dropout(p_drop)\n")),
        "https://github.com/lmjohns3/theanets/pull/123",
    ),
    # ------------------------------------------------------------------ incremental decoding
    Mutant(
        "decode-position-offset-missing", "decoding",
        "incremental decoding embeds the new tokens at positions 0.. instead of after the cached ones",
        (Patch(MODEL, "        y = self.tgt_embed(tgt, position_offset=offset)\n", "        y = self.tgt_embed(tgt)\n"),),
        "https://github.com/ml-explore/mlx-lm/pull/93",
    ),
    Mutant(
        "relative-position-offset-missing", "decoding",
        "the decoder layer does not pass the cache offset to self-attention: rotary and ALiBi positions restart at 0",
        (Patch(LAYERS, "self.self_attn(z, z, z, self_allowed, self_cache, offset))",
               "self.self_attn(z, z, z, self_allowed, self_cache))"),),
        "https://github.com/RobertCsordas/moeut/pull/6",
    ),
    Mutant(
        "cache-concat-head-axis", "decoding", "the key/value cache grows along the head axis instead of the sequence axis",
        (Patch(ATTN, CACHE_CAT, CACHE_CAT.replace("dim=2", "dim=1")),),
    ),
    Mutant(
        "cache-new-before-old", "decoding",
        "new keys/values are put before the cached ones (invisible with one token per step under full "
        "visibility; wrong with multi-token chunks, padding or ALiBi)",
        (Patch(ATTN, CACHE_CAT, CACHE_CAT.replace("[self.keys, k]", "[k, self.keys]").replace("[self.values, v]", "[v, self.values]")),),
        "https://github.com/huggingface/transformers/issues/35684",
    ),
    Mutant(
        "cache-padding-mask-order", "decoding",
        "the cached target padding mask is extended in the wrong order (new positions first)",
        (Patch(MODEL, "torch.cat([past, key_allowed], dim=1)", "torch.cat([key_allowed, past], dim=1)"),),
    ),
    Mutant(
        "alibi-slopes-reversed", "embeddings",
        "ALiBi slopes assigned to the heads in reverse order (the gentlest slope on head 1): every relative-position "
        "property still holds",
        (Patch(EMB, "    slopes = _geometric_slopes(p)\n", "    slopes = _geometric_slopes(p).flip(0)\n"),),
        hints=("alibi",),
    ),
    Mutant(
        "alibi-slopes-geometric-for-every-h", "embeddings",
        "ALiBi slopes 2^(-8j/h) for every head count, not the reference construction when h is not a power of two",
        (Patch(EMB, "    p = 2 ** int(math.floor(math.log2(h)))\n", "    p = h\n"),),
        hints=("alibi",),
    ),
    Mutant(
        "rope-halves-pairing", "embeddings",
        "RoPE rotates the pairs (i, i + d/2) (the rotate-half layout) while this model documents interleaved pairs "
        "(2i, 2i+1): still relative, but another layout than the documented one and than checkpoints expect",
        (Patch(EMB, "        even, odd = x[..., 0::2], x[..., 1::2]  # (B, H, S, d_k/2)\n",
               "        even, odd = x[..., : self.d_k // 2], x[..., self.d_k // 2 :]  # (B, H, S, d_k/2)\n"),
         Patch(EMB, "        return rotated.flatten(-2)\n", "        return torch.cat([rotated[..., 0], rotated[..., 1]], dim=-1)\n")),
        "https://github.com/karpathy/nanochat/issues/264",
        hints=("rotary", "rope"),
    ),
    Mutant(
        "rope-frequency-sign", "embeddings",
        "RoPE frequencies base^(+2i/d) instead of base^(-2i/d): the scores still depend on m - n only",
        (Patch(EMB, "self.base ** (-two_i / self.d_k)", "self.base ** (two_i / self.d_k)"),),
        hints=("rotary", "rope"),
    ),
    # ------------------------------------------------------------------ training
    Mutant(
        "label-smoothing-onto-padding", "training",
        "label smoothing spreads epsilon over all V - 1 other tokens, padding included",
        (Patch(TRAINING, "        others = self.vocab_size - 1 - (self.pad_id is not None)\n", "        others = self.vocab_size - 1\n"),
         Patch(TRAINING, "        if self.pad_id is not None:\n            dist[:, self.pad_id] = 0.0\n", "")),
        "https://github.com/OpenNMT/OpenNMT-py/issues/1463",
    ),
    Mutant(
        "warmup-exponent", "training", "warmup term step * warmup^-0.5 instead of warmup^-1.5: the peak moves to warmup^(1/3)",
        (Patch(TRAINING, "min(step ** -0.5, step * warmup_steps ** -1.5)", "min(step ** -0.5, step * warmup_steps ** -0.5)"),),
        "https://github.com/Kyubyong/transformer/issues/89",
    ),
    Mutant(
        "noam-default-factor", "training",
        "noam_rate's default factor 2 instead of equation 3's 1: the schedule's shape is unchanged",
        (Patch(TRAINING, "warmup_steps: int, factor: float = 1.0) -> float:", "warmup_steps: int, factor: float = 2.0) -> float:"),),
        hints=("noam",),
    ),
    # ------------------------------------------------------------------ tokenisers
    Mutant(
        "bpe-merges-left-to-right", "tokenisers",
        "BPE encoding applies the leftmost applicable merge first instead of the lowest-ranked one",
        (Patch(TOK, "        heap = [(self._ranks[p][0], i) for i, p in enumerate(zip(ids, ids[1:])) if p in self._ranks]\n",
               "        heap = [(i, self._ranks[p][0]) for i, p in enumerate(zip(ids, ids[1:])) if p in self._ranks]\n"),
         Patch(TOK, "            rank, i = heapq.heappop(heap)\n", "            i, rank = heapq.heappop(heap)\n"),
         Patch(TOK, "heapq.heappush(heap, (self._ranks[(ids[left], ids[right])][0], left))",
               "heapq.heappush(heap, (left, self._ranks[(ids[left], ids[right])][0]))")),
        "https://github.com/ztxz16/fastllm/pull/715",
    ),
    Mutant(
        "wordpiece-longest-suffix", "tokenisers",
        "WordPiece matches the longest vocabulary suffix from the end of the word instead of the longest prefix",
        (Patch(TOK,
               "        pieces, start = [], 0\n"
               "        while start < len(word):\n"
               "            for end in range(len(word), start, -1):  # longest candidate first\n"
               "                piece = word[start:end] if start == 0 else self.prefix + word[start:end]\n"
               "                if piece in self._ids:\n"
               "                    break\n"
               "            else:\n"
               "                return [self.unk_token]  # nothing in the vocabulary starts here\n"
               "            pieces.append(piece)\n"
               "            start = end\n",
               "        pieces, end = [], len(word)\n"
               "        while end > 0:\n"
               "            for start in range(0, end):  # longest candidate first\n"
               "                piece = word[start:end] if start == 0 else self.prefix + word[start:end]\n"
               "                if piece in self._ids:\n"
               "                    break\n"
               "            else:\n"
               "                return [self.unk_token]  # nothing in the vocabulary ends here\n"
               "            pieces.insert(0, piece)\n"
               "            end = start\n"),),
        "https://github.com/axa-group/nlp.js/issues/1192",
    ),
    Mutant(
        "pad-id-literal-zero", "masks",
        "the model derives padding from the literal id 0 instead of the pad id its config names",
        (Patch(MODEL, "ids != self.config.pad_id", "ids != 0"),),
        hints=("pad_id", "padding"),
    ),
    Mutant(
        "bpe-decode-strict", "tokenisers",
        "ByteBPE.decode without errors=\"replace\": ids that end inside a character raise instead of giving U+FFFD",
        (Patch(TOK, '.decode("utf-8", errors="replace")', '.decode("utf-8")'),),
        hints=("bpe",),
    ),
    Mutant(
        "wordpiece-limit-inclusive", "tokenisers",
        "WordPiece refuses a word of exactly max_input_chars_per_word characters (>= instead of >)",
        (Patch(TOK, "        if len(word) > self.max_input_chars_per_word:\n", "        if len(word) >= self.max_input_chars_per_word:\n"),),
        hints=("wordpiece",),
    ),
)


def by_id() -> dict[str, Mutant]:
    return {m.id: m for m in CATALOGUE}
