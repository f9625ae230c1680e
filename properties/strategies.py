"""Hypothesis strategies for the whole suite, in one module, composed.

Shapes are drawn first, then values; valid values are constructed, not filtered (draw ``h`` and
``d_head``, then ``d_model = h * d_head``), so shrinking works bottom-up and failures shrink to the
smallest configuration that shows them.

Sections below group the strategies by what they draw: sizes, seeds and tensors; text; whole models;
attention inputs; word sequences for the pretrained model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from hypothesis import strategies as st

# Shared with the installable conformance suite, re-exported here for the repository's properties.
from transformer.testing.strategies import (  # noqa: F401
    LOW_PRECISION,
    MASK_KINDS,
    attention_cases,
    attention_layouts,
    attention_masks,
    gaussian,
    lengths_with_padding,
    live_rows,
    seeds,
)

# --------------------------------------------------------------------------------------------------
# Core: sizes, seeds, tensors
# --------------------------------------------------------------------------------------------------

# seeds, gaussian, lengths_with_padding: imported above from transformer.testing.strategies


@st.composite
def head_layouts(draw, *, min_heads: int = 1, max_heads: int = 4, max_d_head: int = 8):
    """(h, d_head, d_model) with d_model = h * d_head."""
    h = draw(st.integers(min_heads, max_heads))
    d_head = draw(st.integers(1, max_d_head))
    return h, d_head, h * d_head




# --------------------------------------------------------------------------------------------------
# Text: arbitrary Unicode, tokeniser corpora and vocabularies
# --------------------------------------------------------------------------------------------------

# Characters that trip naive byte or character handling: emoji (4 UTF-8 bytes, a ZWJ sequence, a skin
# tone), combining marks, CJK, Hangul, right-to-left script, controls, the BOM, unusual spaces, the
# highest code point. Lone surrogates are left out: Python can hold them, UTF-8 cannot encode them.
TRICKY_TEXT = ("😀", "👩\u200d💻", "👍🏽", "e\u0301", "\u0308", "中文", "한", "שלום", "\x00", "\x07", "\t",
               "\n", "\r\n", "\x7f", "\x85", "\ufeff", "\xa0", "\u3000", " ", "  ", "\U0010ffff")


def unicode_texts(*, max_pieces: int = 30):
    """Any text UTF-8 can encode (every code point but the surrogates), rich in the pieces above."""
    piece = st.one_of(st.characters(exclude_categories=("Cs",)), st.sampled_from(TRICKY_TEXT))
    return st.lists(piece, max_size=max_pieces).map("".join)


# A small pool, so that pairs repeat and counts tie; spaces make several words per text.
CORPUS_CHARS = ("a", "b", "c", " ", "é", "中", "😀", "\n")


@st.composite
def bpe_corpora(draw, *, max_texts: int = 8, max_chars: int = 24):
    """A corpus (a list of texts, the first one non-empty) over a drawn alphabet of 1-4 characters."""
    alphabet = draw(st.lists(st.sampled_from(CORPUS_CHARS), min_size=1, max_size=4, unique=True))
    first = draw(st.text(alphabet=alphabet, min_size=1, max_size=max_chars))
    return [first, *draw(st.lists(st.text(alphabet=alphabet, max_size=max_chars), max_size=max_texts - 1))]


def word_corpora(*, letters: str = "abcd", max_words: int = 10, max_len: int = 6):
    """A corpus of single words (no whitespace), so BPE and WordPiece see the same words."""
    return st.lists(st.text(alphabet=letters, min_size=1, max_size=max_len), min_size=1, max_size=max_words)


@st.composite
def balanced_two_letter_corpora(draw, *, letters: str = "abcde"):
    """Two-letter words in which every WordPiece unit is equally frequent.

    For n letters and drawn shifts s (repeats allowed), the words are letters[i] + letters[(i + s) % n]
    for every i: each first letter and each ``##`` second letter occurs once per shift.
    """
    n = draw(st.integers(2, len(letters)))
    shifts = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=6))
    return [letters[i] + letters[(i + s) % n] for s in shifts for i in range(n)]


@st.composite
def wordpiece_vocabularies(draw, *, letters: str = "abc", max_piece: int = 3, max_pieces: int = 12):
    """A WordPiece vocabulary: ``[UNK]`` then distinct pieces over ``letters``, some ``##``-prefixed;
    half the time it holds every single letter, bare and prefixed, so that every word over ``letters``
    can be spelled."""
    piece = st.tuples(st.booleans(), st.text(alphabet=letters, min_size=1, max_size=max_piece))
    pieces = draw(st.lists(piece.map(lambda p: "##" * p[0] + p[1]), unique=True, max_size=max_pieces))
    if draw(st.booleans()):
        pieces = list(dict.fromkeys([*pieces, *letters, *("##" + c for c in letters)]))
    return ("[UNK]", *pieces)


@st.composite
def wordpiece_vocabularies_and_words(draw, *, letters: str = "abc", other: str = "d#"):
    """(vocabulary, word): the word is mostly spelled by vocabulary pieces (so matching has work to do),
    sometimes any string over ``letters + other`` (``other`` is never in the vocabulary)."""
    vocab = draw(wordpiece_vocabularies(letters=letters))
    bodies = sorted({p.removeprefix("##") for p in vocab[1:]})
    if not bodies:
        return vocab, draw(st.text(alphabet=letters + other, max_size=8))
    spelled = st.lists(st.sampled_from(bodies), min_size=1, max_size=4).map("".join)
    return vocab, draw(st.one_of(spelled, st.text(alphabet=letters + other, max_size=8)))


# --------------------------------------------------------------------------------------------------
# Model: whole-model configurations, padded token ids, permutations, cache chunkings
# --------------------------------------------------------------------------------------------------

ALL_POSITIONAL = ("sinusoidal", "learned", "rope", "alibi", "none")


@st.composite
def model_configs(draw, *, positional=ALL_POSITIONAL, norm_placement=("post", "pre"), max_layers: int = 3,
                  **fixed):
    """A small encoder-decoder config: d_model 4-16, 1-4 heads of even width, 1-max_layers layers each, no dropout.

    Widths are even so that rotary embeddings apply; pad_id is None so random ids never count as
    padding (pass explicit masks instead); ``fixed`` overrides any field.
    """
    from transformer import TransformerConfig

    h = draw(st.integers(1, 4))
    d_k = draw(st.sampled_from([4] if h == 1 else [2, 4]))  # d_model = h * d_k in [4, 16]
    vocab = draw(st.integers(5, 13))
    settings = dict(
        src_vocab_size=vocab,
        tgt_vocab_size=vocab,
        d_model=h * d_k,
        h=h,
        d_ff=draw(st.integers(2, 16)),
        n_encoder_layers=draw(st.integers(1, max_layers)),
        n_decoder_layers=draw(st.integers(1, max_layers)),
        p_drop=0.0,
        positional=draw(st.sampled_from(positional)),
        norm_placement=draw(st.sampled_from(norm_placement)),
        activation=draw(st.sampled_from(["relu", "gelu"])),
        tying="none",
        pad_id=None,
        max_len=32,
    )
    settings.update(fixed)
    return TransformerConfig(**settings)


def seeded_model(config, seed: int):
    """The float64 Transformer of ``config`` in eval mode, its weights drawn from ``seed``."""
    from transformer import Transformer

    torch.manual_seed(seed)
    return Transformer(config).double().eval()


@st.composite
def padded_token_batches(draw, *, vocab_size: int, batch: int, length: int, seed: int,
                         allow_empty: bool = True):
    """(ids (B, S), key_allowed (B, S) bool): random ids, per-example lengths, the rest padding.

    With ``allow_empty`` an example may be all padding (its attention rows are fully masked).
    """
    lengths = draw(lengths_with_padding(batch=batch, max_len=length, allow_empty=allow_empty))
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab_size, (batch, length), generator=g)
    key_allowed = torch.arange(length)[None, :] < lengths[:, None]  # (B, S)
    return ids, key_allowed


@st.composite
def per_example_permutations(draw, *, batch: int, length: int):
    """(B, S) long tensor whose row b is a permutation of 0..S-1, drawn independently per example."""
    rows = [draw(st.permutations(range(length))) for _ in range(batch)]
    return torch.tensor(rows, dtype=torch.long).reshape(batch, length)


@st.composite
def chunkings(draw, *, total: int):
    """Chunk sizes (each >= 1) that add up to ``total``: how a target is fed to a key/value cache."""
    sizes, left = [], total
    while left:
        size = draw(st.integers(1, left))
        sizes.append(size)
        left -= size
    return sizes


@st.composite
def non_identity_permutations(draw, *, batch: int, length: int):
    """Per-example permutations (length >= 2), none of them the identity (an identity row is rolled by one)."""
    perm = draw(per_example_permutations(batch=batch, length=length))
    identity = (perm == torch.arange(length)).all(dim=1)
    perm[identity] = perm[identity].roll(1, dims=1)
    return perm


@dataclass(frozen=True)
class EncoderDecoderCase:
    """A model configuration, a seed for its weights, a padded source and target batch, and cache chunk sizes."""

    config: object
    seed: int
    src: torch.Tensor           # (B, S)
    src_allowed: torch.Tensor   # (B, S) bool, True at real tokens; an example may be all padding
    tgt: torch.Tensor           # (B, T)
    tgt_allowed: torch.Tensor   # (B, T) bool
    chunks: tuple[int, ...]     # how the target is fed to a key/value cache


@st.composite
def encoder_decoder_cases(draw, *, configs=None, max_len: int = 7):
    """An `EncoderDecoderCase`: config first (default `model_configs()`), then batch 1-3, lengths 1-max_len,
    per-example padding of source and target, and a chunking of the target."""
    config = draw(configs if configs is not None else model_configs())
    batch, seed = draw(st.integers(1, 3)), draw(seeds)
    src, src_allowed = draw(padded_token_batches(vocab_size=config.src_vocab_size, batch=batch,
                                                 length=draw(st.integers(1, max_len)), seed=seed))
    tgt, tgt_allowed = draw(padded_token_batches(vocab_size=config.tgt_vocab_size, batch=batch,
                                                 length=draw(st.integers(1, max_len)), seed=seed + 1))
    return EncoderDecoderCase(config, seed, src, src_allowed, tgt, tgt_allowed,
                              tuple(draw(chunkings(total=tgt.shape[1]))))


# --------------------------------------------------------------------------------------------------
# Attention: batch/head/length layouts, per-example padding and causal masks, dtypes, token matrices
# --------------------------------------------------------------------------------------------------

# LOW_PRECISION, MASK_KINDS, attention_layouts, attention_masks, attention_cases, live_rows ship with the
# package (the conformance properties draw them): imported above from transformer.testing.strategies.


@st.composite
def small_token_matrices(draw, *, max_rows: int = 4, min_dim: int = 1, max_dim: int = 3, bound: int = 3):
    """X (n, d), float64 with small integer entries drawn one by one, so that hypothesis shrinks a
    counterexample to the simplest matrix (values are not seeded here: the entries are the search space)."""
    n = draw(st.integers(2, max_rows))
    d = draw(st.integers(min_dim, max_dim))
    entries = draw(st.lists(st.integers(-bound, bound), min_size=n * d, max_size=n * d))
    return torch.tensor(entries, dtype=torch.float64).reshape(n, d)


# --------------------------------------------------------------------------------------------------
# Trained models: English word sequences for the pretrained-BERT oracle
# --------------------------------------------------------------------------------------------------

# Common words, words WordPiece splits into several pieces, capitals, digits and punctuation.
ORACLE_WORDS = (
    "the a of and to in is was he she it they we you that with for on at by from this not but "
    "house river morning music garden window teacher quickly slowly green old small yesterday "
    "believe remember carried opened unbelievably misunderstanding photosynthesis reconstruction "
    "Paris London Thursday Mozart 42 1999 3.5 , . ! ? ; ' ( ) -"
).split()


@st.composite
def sentence_batches(draw, *, max_batch: int = 4, max_words: int = 16):
    """A batch of 1..max_batch word sequences of different lengths (so the batch needs padding), each with
    the word index where its second segment (token type 1) starts, or None; plus extra trailing padding.

    Returns (texts: list[str], second_segment_word: list[int | None], extra_padding: int).
    """
    batch = draw(st.integers(1, max_batch))
    texts, splits = [], []
    for _ in range(batch):
        n_words = draw(st.integers(1, max_words))
        words = draw(st.lists(st.sampled_from(ORACLE_WORDS), min_size=n_words, max_size=n_words))
        texts.append(" ".join(words))
        splits.append(draw(st.one_of(st.none(), st.integers(0, n_words - 1))))
    return texts, splits, draw(st.integers(0, 3))
