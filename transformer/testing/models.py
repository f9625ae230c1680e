"""Model-level conformance: a small adapter contract for whole models, and the ``model.*`` properties.

A factory may return a model adapter instead of an attention callable. The adapter wraps one model,
in float64 and eval mode, and provides what it can of::

    vocab_size: int                      # token ids are drawn in [0, vocab_size)
    positions: bool                      # False: the model has no position information at all
    tied: bool                           # True: the model says its embedding and output matrices are one
    encoder_decoder: bool                # True: decode() and decode_step() get a source batch
    encode(ids, allowed) -> states       # ids (B, S) long, allowed (B, S) bool (True = real token) -> (B, S, D)
    decode(ids, source=None) -> states   # ids (B, T) long, one causal pass without a cache -> (B, T, D)
    decode_step(ids, cache, source=None) -> (states, cache)
        # the next tokens ids (B, T_new) given the cache a previous step returned (None at the start)
    # source = (src_ids (B, S), src_allowed (B, S)) for an encoder-decoder, None otherwise
    embedding_matrix() -> (V, D) tensor; output_matrix() -> (V, D) tensor

A method that is missing (or raises ``NotImplementedError``) makes the properties that need it
not applicable for that row; ``conformance_name`` names the row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from hypothesis import strategies as st

from .properties import PropertyFailure, fail
from .strategies import padded_ids
from .tolerances import FLOAT32_LEVEL, FLOAT64_DEEP

MODEL_METHODS = ("encode", "decode", "decode_step", "embedding_matrix", "output_matrix")


def is_model_adapter(obj) -> bool:
    return any(callable(getattr(obj, m, None)) for m in MODEL_METHODS) and hasattr(obj, "vocab_size")


@dataclass(frozen=True)
class ModelRow:
    name: str
    adapter: object
    spec: str = ""
    kind: str = "model"

    @property
    def description(self) -> str:
        return getattr(self.adapter, "description", self.spec)


@dataclass(frozen=True)
class ModelProperty:
    name: str
    claim: str
    needs: tuple[str, ...]
    cases: Callable
    check: Callable
    examples: tuple = ()
    condition: Callable | None = None  # adapter -> reason it does not apply, or None

    def applies(self, row) -> str | None:
        missing = [m for m in self.needs if not callable(getattr(row.adapter, m, None))]
        if missing:
            return f"the adapter has no {', '.join(missing)}"
        return self.condition(row.adapter) if self.condition else None


def _call(adapter, method: str, *args, **kwargs):
    from .runner import NotApplicable

    try:
        return getattr(adapter, method)(*args, **kwargs)
    except NotImplementedError as exc:
        raise NotApplicable(f"{method}: {exc or 'not implemented'}") from None


def _close(actual, expected, what: str, guess: str = ""):
    if actual.shape != expected.shape:
        fail(f"{what}: shape {tuple(actual.shape)}, expected {tuple(expected.shape)}")
    if not torch.allclose(actual.double(), expected.double(), rtol=FLOAT64_DEEP.rtol, atol=FLOAT64_DEEP.atol):
        err = float((actual.double() - expected.double()).abs().max())
        words = f"{what} (largest difference {err:.3g})"
        if err <= FLOAT32_LEVEL * (1 + float(expected.double().abs().max())):
            words += (": only at about float32 precision, in a float64 model, so part of the computation (typically "
                      "the softmax) runs in float32 and the two routes round differently")
        elif guess:
            words += f"; probably: {guess}"
        fail(words)


def _tensors(ids, lengths):
    ids = torch.tensor(ids, dtype=torch.long)
    return ids, torch.arange(ids.shape[1])[None, :] < torch.tensor(lengths)[:, None]


def _source(adapter, case):
    if "src" not in case:
        return None
    return _tensors(case["src"]["ids"], case["src"]["lengths"])


def _decode_cases(adapter, *, min_len: int = 1, extra=None):
    vocab = adapter.vocab_size

    @st.composite
    def cases(draw):
        batch = draw(st.integers(1, 3))
        length = draw(st.integers(min_len, 6))
        case = {"ids": draw(st.lists(st.lists(st.integers(0, vocab - 1), min_size=length, max_size=length),
                                     min_size=batch, max_size=batch))}
        if getattr(adapter, "encoder_decoder", False):
            case["src"] = draw(padded_ids(vocab, batch=batch))
        if extra:
            case.update(extra(draw, length, vocab))
        return case

    return cases()


# ---------------------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------------------

def check_padding_invariance(row, case):
    """Each example's encoding at its real positions equals the encoding of that example alone,
    unpadded, whatever the padded positions hold."""
    adapter = row.adapter
    ids, allowed = _tensors(case["ids"], case["lengths"])
    garbage = torch.where(allowed, ids, (ids + 1 + torch.arange(ids.shape[1])) % adapter.vocab_size)
    with torch.no_grad():
        batched = _call(adapter, "encode", ids, allowed)
        rewritten = _call(adapter, "encode", garbage, allowed)
        for b, n in enumerate(case["lengths"]):
            alone = _call(adapter, "encode", ids[b:b + 1, :n], allowed[b:b + 1, :n])
            _close(batched[b:b + 1, :n], alone, f"example {b} padded to {ids.shape[1]} differs from it alone "
                   f"(length {n}): padding leaks into real positions")
    real = allowed[..., None].expand_as(batched)
    _close(rewritten[real], batched[real], "real positions change when the padded tokens change")


def check_causal_future_invariance(row, case):
    """Decoder states up to position t ignore the tokens after t and depend on the token at t."""
    adapter = row.adapter
    ids = torch.tensor(case["ids"], dtype=torch.long)
    t = case["t"]
    source = _source(adapter, case)
    changed = ids.clone()
    changed[:, t + 1:] = (changed[:, t + 1:] + 1) % adapter.vocab_size
    present = ids.clone()
    present[:, t] = (present[:, t] + 1) % adapter.vocab_size
    with torch.no_grad():
        states = _call(adapter, "decode", ids, source)
        later = _call(adapter, "decode", changed, source)
        now = _call(adapter, "decode", present, source)
    _close(later[:, : t + 1], states[:, : t + 1], f"decoder states up to position {t} change with later tokens")
    if not ((now[:, t] - states[:, t]).abs().amax(-1) > 1e-9).all():
        fail(f"the token at position {t} does not change the state at {t} (the present is masked?)")


def check_kv_cache_equivalence(row, case):
    """Decoding in chunks with the key/value cache gives the states of one full causal pass."""
    adapter = row.adapter
    ids = torch.tensor(case["ids"], dtype=torch.long)
    source = _source(adapter, case)
    with torch.no_grad():
        full = _call(adapter, "decode", ids, source)
        pieces, cache, start = [], None, 0
        for size in case["chunks"]:
            states, cache = _call(adapter, "decode_step", ids[:, start:start + size], cache, source)
            pieces.append(states)
            start += size
    _close(torch.cat(pieces, 1), full, f"cached decoding in chunks {case['chunks']} differs from one full pass")


def check_permutation_equivariance(row, case):
    """Without positions, permuting the tokens (and the padding mask) of each example permutes the
    encoder's states the same way."""
    adapter = row.adapter
    ids, allowed = _tensors(case["ids"], case["lengths"])
    perm = torch.tensor(case["perm"], dtype=torch.long)  # (B, S)
    with torch.no_grad():
        states = _call(adapter, "encode", ids, allowed)
        moved = _call(adapter, "encode", ids.gather(1, perm), allowed.gather(1, perm))
    expected = states.gather(1, perm[..., None].expand_as(states))
    real = allowed.gather(1, perm)[..., None].expand_as(moved)
    _close(moved[real], expected[real], "permuting the tokens does not permute the states",
           "position information reaches the states although the adapter says there is none")


def check_tied_embeddings(row, case):
    """A model that ties its embedding and output matrices holds one tensor: same storage, same
    values, and a write to one is seen by the other."""
    adapter = row.adapter
    embedding, output = _call(adapter, "embedding_matrix"), _call(adapter, "output_matrix")
    if embedding.shape != output.shape:
        fail(f"embedding {tuple(embedding.shape)} and output {tuple(output.shape)} matrices differ in shape")
    if embedding.untyped_storage().data_ptr() != output.untyped_storage().data_ptr():
        fail("the model says its embeddings are tied, but the embedding and output matrices are two tensors "
             "(a copy, not a share)")
    with torch.no_grad():
        i, j = case["index"] % embedding.shape[0], case["index"] % embedding.shape[1]
        before = float(output[i, j])
        embedding[i, j] += 1.0
        seen = float(output[i, j])
        embedding[i, j] -= 1.0
    if seen == before:
        fail("writing to the embedding matrix does not change the output matrix")


def _no_positions(adapter):
    return "the model uses positions" if getattr(adapter, "positions", True) else None


def _not_tied(adapter):
    return None if getattr(adapter, "tied", False) else "the model does not tie its embeddings"


def _permutation_cases(row):
    adapter = row.adapter

    @st.composite
    def cases(draw):
        case = draw(padded_ids(adapter.vocab_size, min_len=2))
        case["perm"] = [draw(st.permutations(range(len(case["ids"][0])))) for _ in case["ids"]]
        return case

    return cases()


def _future_extra(draw, length, vocab):
    return {"t": draw(st.integers(0, length - 1))}


def _chunk_extra(draw, length, vocab):
    sizes, left = [], length
    while left:
        sizes.append(draw(st.integers(1, left)))
        left -= sizes[-1]
    return {"chunks": sizes}


MODEL_PROPERTIES = {p.name: p for p in (
    ModelProperty("model.padding-invariance", "padding an example does not change its encoding at real positions",
                  ("encode",), lambda row: padded_ids(row.adapter.vocab_size), check_padding_invariance),
    ModelProperty("model.causal-future-invariance", "decoder states ignore later tokens and see the present one",
                  ("decode",), lambda row: _decode_cases(row.adapter, extra=_future_extra), check_causal_future_invariance),
    ModelProperty("model.kv-cache-equivalence", "decoding with a key/value cache equals one full causal pass",
                  ("decode", "decode_step"), lambda row: _decode_cases(row.adapter, min_len=2, extra=_chunk_extra),
                  check_kv_cache_equivalence),
    ModelProperty("model.permutation-equivariance", "without positions, permuting the tokens permutes the states",
                  ("encode",), _permutation_cases, check_permutation_equivariance, condition=_no_positions),
    ModelProperty("model.tied-embeddings-share-storage", "tied embedding and output matrices are one tensor",
                  ("embedding_matrix", "output_matrix"), lambda row: st.fixed_dictionaries({"index": st.integers(0, 10**6)}),
                  check_tied_embeddings, condition=_not_tied),
)}


# ---------------------------------------------------------------------------------------------------
# This project's model
# ---------------------------------------------------------------------------------------------------

class ProjectTransformerAdapter:
    """``transformer.Transformer`` (a tiny float64 config, three-way tying) behind the adapter contract."""

    def __init__(self, positional: str = "sinusoidal", seed: int = 0, **overrides):
        from transformer import Transformer, TransformerConfig

        settings = dict(src_vocab_size=11, tgt_vocab_size=11, d_model=8, h=2, d_ff=16, n_encoder_layers=2,
                        n_decoder_layers=2, p_drop=0.0, positional=positional, tying="three-way", pad_id=None,
                        max_len=32)
        settings.update(overrides)
        torch.manual_seed(seed)
        self.config = TransformerConfig(**settings)
        self.model = Transformer(self.config).double().eval()
        self.vocab_size = self.config.src_vocab_size
        self.positions = positional != "none"
        self.tied = self.config.tying != "none"
        self.conformance_name = "project-transformer" + ("" if self.positions else "-no-positions")
        self.description = f"transformer.Transformer ({positional} positions, {self.config.tying} tying)"

    def encode(self, ids, allowed):
        return self.model.encode(ids, allowed)

    encoder_decoder = True

    def decode(self, ids, source=None):
        src, src_allowed = source
        return self.model.decode(ids, self.model.encode(src, src_allowed), src_allowed)

    def decode_step(self, ids, cache, source=None):
        src, src_allowed = source
        cache = self.model.new_cache() if cache is None else cache
        return self.model.decode(ids, self.model.encode(src, src_allowed), src_allowed, cache=cache), cache

    def embedding_matrix(self):
        return self.model.tgt_embed.token.weight

    def output_matrix(self):
        return self.model.generator.proj.weight


def project_transformer():
    return ProjectTransformerAdapter()


def project_transformer_without_positions():
    return ProjectTransformerAdapter(positional="none")


__all__ = ["MODEL_PROPERTIES", "ModelRow", "ProjectTransformerAdapter", "PropertyFailure", "is_model_adapter"]
