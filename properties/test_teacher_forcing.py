"""Teacher forcing: one parallel pass over the shifted target trains exactly what generation will ask.

During training the decoder reads the target shifted right by one, so the prediction scored against
token t + 1 is computed from tokens 0..t only, exactly the distribution step-by-step generation
computes after seeing that prefix; the one-call training path honours the target padding mask too.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from properties.strategies import model_configs, seeded_model, seeds
from properties.tolerances import FLOAT64_DEEP
from transformer import teacher_forcing_loss

CONFIGS = model_configs(positional=("sinusoidal",), max_layers=2)


@pytest.mark.claim("arch.teacher-forcing-parallel", kind="exact")
@given(config=CONFIGS, batch=st.integers(1, 3), src_len=st.integers(1, 5), tgt_len=st.integers(2, 6), seed=seeds)
def test_teacher_forced_scores_equal_the_next_token_distribution_of_each_prefix(config, batch, src_len, tgt_len, seed):
    """Position t of the teacher-forced pass scores token t + 1 with the distribution generation gives after 0..t."""
    model = seeded_model(config, seed)
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, config.src_vocab_size, (batch, src_len), generator=g)
    tgt = torch.randint(0, config.tgt_vocab_size, (batch, tgt_len), generator=g)
    seen = {}

    def spy_loss(log_probs, labels):
        seen["log_probs"], seen["labels"] = log_probs, labels
        return log_probs.sum()

    teacher_forcing_loss(model, src, tgt, spy_loss)
    memory = model.encode(src)
    for t in range(tgt_len - 1):
        after_prefix = model.generator(model.decode(tgt[:, : t + 1], memory))[:, -1]  # (B, V)
        torch.testing.assert_close(seen["log_probs"][:, t], after_prefix, **FLOAT64_DEEP)
        assert torch.equal(seen["labels"][:, t], tgt[:, t + 1]), f"position {t} is not scored against token {t + 1}"


@pytest.mark.claim("arch.teacher-forcing-parallel", kind="exact")
@given(config=model_configs(positional=("sinusoidal",), max_layers=2, h=2, d_model=8), batch=st.integers(1, 3),
       tgt_len=st.integers(2, 6), seed=seeds)
def test_target_padding_mask_reaches_the_decoder_in_the_full_forward_pass(config, batch, tgt_len, seed):
    """forward(src, tgt, tgt_key_allowed) equals generator(decode(tgt, encode(src), tgt_key_allowed)): the target
    padding mask is honoured by the one-call training path, e.g. for left-padded targets. (d_model = 8: with
    d_model = 2 a post-LN LayerNorm leaves only a sign, and a changed token can go unseen.)"""
    model = seeded_model(config, seed)
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, config.src_vocab_size, (batch, 3), generator=g)
    tgt = torch.randint(0, config.tgt_vocab_size, (batch, tgt_len), generator=g)
    tgt[0, 0] = (tgt[0, 1] + 1) % config.tgt_vocab_size  # the padded token differs from the real ones after it
    tgt_allowed = torch.ones(batch, tgt_len, dtype=torch.bool)
    tgt_allowed[0, 0] = False  # a left-padded first example
    expected = model.generator(model.decode(tgt, model.encode(src), tgt_key_allowed=tgt_allowed))
    torch.testing.assert_close(model(src, tgt, tgt_key_allowed=tgt_allowed), expected,
                               **FLOAT64_DEEP)
    unmasked = model.generator(model.decode(tgt, model.encode(src)))
    assert not torch.allclose(expected[0, 1:], unmasked[0, 1:]), "the padded token should matter when unmasked"
