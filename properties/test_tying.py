"""Weight tying: one tensor for the source embedding, the target embedding and the pre-softmax linear.

The generator's weight has the embedding table's (vocab, d) shape, so tying needs no transpose. A tied
tensor is counted once, receives the summed gradient of all its uses and saves vocab x d parameters
per tie; a copy drifts apart after one optimiser step. With equal row norms a token's own row wins its
logit, unequal norms let another row win, and the output projection's cost grows linearly with the
vocabulary. Tying means the same storage, not equal values: the checks compare tensor identity and
data pointers, gradients and optimiser steps, never just values at one moment.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from proofs.closed_forms import matmul_flops, tie_saving, transformer_params_from_config
from properties.strategies import encoder_decoder_cases, gaussian, model_configs, seeds
from properties.tolerances import FLOAT64, FLOAT64_DEEP
from transformer import (
    Generator,
    Transformer,
    TransformerConfig,
    make_optimizer,
    noam_scheduler,
)

TIED_NAMES = ("src_embed.token.lut.weight", "tgt_embed.token.lut.weight", "generator.proj.weight")


def _tied_uses(model: Transformer) -> list[torch.Tensor]:
    return [model.src_embed.token.weight, model.tgt_embed.token.weight, model.generator.proj.weight]


def _loss(model: Transformer, src, tgt, seed: int) -> torch.Tensor:
    """A generic scalar of the log-probabilities (a random linear functional), so every logit matters."""
    log_probs = model(src, tgt)
    return (log_probs * gaussian(tuple(log_probs.shape), seed)).sum()


def tied_cases():
    """Encoder-decoder cases whose config ties the decoder embedding (and maybe the source one) to the generator."""
    configs = st.builds(lambda c, mode: c.with_(tying=mode), model_configs(), st.sampled_from(["decoder", "three-way"]))
    return encoder_decoder_cases(configs=configs).map(lambda c: (c.config, c.seed, c.src, c.tgt))


@pytest.mark.claim("tie.shared-storage", kind="exact")
@given(case=tied_cases())
def test_tied_matrices_are_one_tensor_counted_once_with_the_summed_gradient(case):
    """The tied uses are one Parameter (same object, same data pointer, after .double() too), listed once among
    the parameters, and its gradient equals the sum of the gradients an untied twin gets at each use."""
    config, seed, src, tgt = case
    torch.manual_seed(seed)
    model = Transformer(config).double()
    src_w, tgt_w, gen_w = _tied_uses(model)
    assert gen_w is tgt_w and gen_w.data_ptr() == tgt_w.data_ptr()
    assert (src_w is tgt_w) == (config.tying == "three-way")
    assert sum(p is tgt_w for p in model.parameters()) == 1, "a shared tensor must be counted once"
    twin = Transformer(config.with_(tying="none")).double()
    twin.load_state_dict(model.state_dict())  # the same values in three separate tensors
    assert len({p.data_ptr() for p in _tied_uses(twin)}) == 3
    _loss(model, src, tgt, seed).backward()
    _loss(twin, src, tgt, seed).backward()
    uses = _tied_uses(twin) if config.tying == "three-way" else _tied_uses(twin)[1:]
    torch.testing.assert_close(tgt_w.grad, sum(w.grad for w in uses), **FLOAT64_DEEP)


@pytest.mark.claim("tie.no-transpose-needed", kind="exact")
@given(vocab=st.integers(1, 64), d=st.integers(1, 32), n=st.integers(1, 5), seed=seeds)
def test_linear_and_embedding_store_the_same_vocab_by_d_shape(vocab, d, n, seed):
    """nn.Linear(d, V).weight and nn.Embedding(V, d).weight are both (V, d); the model's generator scores
    x against the embedding table as stored: logits = x E^T, row t of the table scoring token t."""
    assert nn.Linear(d, vocab).weight.shape == nn.Embedding(vocab, d).weight.shape == (vocab, d)
    config = TransformerConfig.tiny(vocab_size=max(vocab, 2), d_model=2 * d, h=1, pad_id=None)
    torch.manual_seed(seed)
    model = Transformer(config).double()
    table = model.tgt_embed.token.weight
    assert model.generator.proj.weight.shape == table.shape == (config.tgt_vocab_size, 2 * d)
    x = gaussian((1, n, 2 * d), seed)
    torch.testing.assert_close(model.generator(x), torch.log_softmax(x @ table.T, dim=-1), **FLOAT64)


@pytest.mark.claim("tie.copy-is-not-tying", kind="exact")
@given(case=tied_cases())
def test_a_copy_drifts_after_one_step_a_shared_tensor_cannot(case):
    """Start an untied model with the generator weight copied from the embedding: after one Adam step (the
    model's optimiser and schedule) the copies differ; in the tied model the uses are still one tensor."""
    config, seed, src, tgt = case
    config = config.with_(warmup_steps=1)
    torch.manual_seed(seed)
    tied = Transformer(config).double()
    copied = Transformer(config.with_(tying="none")).double()
    copied.load_state_dict(tied.state_dict())
    for model in (tied, copied):
        optimizer = make_optimizer(model, config)
        scheduler = noam_scheduler(optimizer, config)
        _loss(model, src, tgt, seed).backward()
        optimizer.step()
        scheduler.step()
    drift = (copied.generator.proj.weight - copied.tgt_embed.token.weight).abs().max()
    assert drift > 0, "a copied weight should drift away from the original after one step"
    src_w, tgt_w, gen_w = _tied_uses(tied)
    assert gen_w is tgt_w and torch.equal(gen_w, tgt_w)


@pytest.mark.claim("tie.copy-is-not-tying", kind="exact")
@given(config=model_configs())
def test_each_tie_saves_vocab_times_d(config):
    """Counted parameters: none - decoder = V d and decoder - three-way = V d, the closed form of one tie."""
    count = {mode: sum(p.numel() for p in Transformer(config.with_(tying=mode)).parameters())
             for mode in ("none", "decoder", "three-way")}
    saving = tie_saving(config.tgt_vocab_size, config.d_model)
    assert count["none"] - count["decoder"] == saving == count["decoder"] - count["three-way"]
    assert count["three-way"] == transformer_params_from_config(config.with_(tying="three-way"))


def _tied_generator(table: torch.Tensor) -> Generator:
    """A model whose tied table is set to `table`; returns its generator (which reads the same tensor)."""
    vocab, d = table.shape
    model = Transformer(TransformerConfig.tiny(vocab_size=vocab, d_model=d, h=1, pad_id=None)).double()
    with torch.no_grad():
        model.tgt_embed.token.weight.copy_(table)
    return model.generator


@pytest.mark.claim("tie.nearest-row-wins", kind="exact")
@given(vocab=st.integers(2, 24), d=st.integers(2, 16), radius=st.floats(0.1, 10.0), seed=seeds)
def test_with_equal_row_norms_the_embedding_row_wins_its_own_logit(vocab, d, radius, seed):
    """Rows of equal norm r (drawn, distinct): the hidden state E[t] gives token t the largest logit, r^2,
    because <E[t], E[j]> <= |E[t]| |E[j]| = r^2 with equality only for E[j] = E[t]."""
    rows = gaussian((vocab, d), seed)
    table = radius * rows / rows.norm(dim=1, keepdim=True)
    generator = _tied_generator(table)
    logits = generator.proj(table[None])[0]  # (V, V): row t = logits of hidden state E[t]
    torch.testing.assert_close(logits.diagonal(), torch.full((vocab,), radius ** 2, dtype=torch.float64), **FLOAT64)
    assert torch.equal(logits.argmax(dim=1), torch.arange(vocab)), "some row lost its own logit"


@pytest.mark.claim("tie.nearest-row-wins", kind="counterexample")
def test_unequal_row_norms_let_another_row_win(measure):
    """E = [[1, 0], [2, 0], [0, 1]]: the hidden state E[0] scores token 1 higher (2 > 1); and at init, small
    widths lose rows to longer neighbours while realistic widths do not (measured)."""
    table = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    logits = _tied_generator(table).proj(table[:1])[0]
    measure("counterexample", {"table": table.tolist(), "hidden": table[0].tolist(), "logits": logits.tolist(),
                               "argmax": int(logits.argmax())})
    assert int(logits.argmax()) == 1
    lost = {}
    for d in (4, 16, 64):
        torch.manual_seed(0)
        table = Transformer(TransformerConfig.tiny(vocab_size=4096, d_model=d, h=1, pad_id=None)).tgt_embed.token.weight
        with torch.no_grad():
            wins = (table @ table.T).argmax(dim=1) == torch.arange(4096)
        lost[d] = 1 - float(wins.double().mean())
    measure("fraction_of_rows_not_winning_their_own_logit_at_init", lost, vocab=4096, init="N(0, 1/d)")
    assert lost[4] > 0.0 and lost[64] == 0.0, lost


@pytest.mark.claim("tie.shared-vocab-cost", kind="measured")
def test_output_projection_flops_grow_linearly_with_the_vocabulary(measure):
    """FlopCounterMode on the model's generator: 2 n d V for V in 1000..16000, so doubling V doubles the cost."""
    n, d, counted = 16, 64, {}
    for vocab in (1000, 2000, 4000, 8000, 16000):
        generator = Generator(d, vocab)
        x = torch.randn(1, n, d)
        with FlopCounterMode(display=False) as counter:
            generator(x)
        counted[vocab] = counter.get_total_flops()
        assert counted[vocab] == matmul_flops(n, d, vocab), (vocab, counted[vocab])
    measure("generator_flops_by_vocab", {str(v): f for v, f in counted.items()}, n=n, d_model=d,
            closed_form="2 n d V")
    assert counted[16000] == 16 * counted[1000]
