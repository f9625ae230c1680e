"""Greedy generation as a user runs it: its own BOS is never padding, rows stop at EOS, padding is strippable.

A row that has produced EOS is finished: what follows is the pad id, and ``lengths`` says how much of
each row to keep. Generation stops as soon as every row has finished. EOS changes only where a row
ends, never which tokens come before it.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from properties.strategies import model_configs, seeds
from transformer import Transformer, TransformerConfig, greedy_decode


def _model(config: TransformerConfig, seed: int) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(config).double().eval()


def _scores(model: Transformer, *args, **kwargs) -> list[torch.Tensor]:
    """The log-probabilities greedy decoding computed at each step, read at the generator."""
    seen = []
    hook = model.generator.register_forward_hook(lambda m, inputs, out: seen.append(out[:, -1]))
    greedy_decode(model, *args, **kwargs)
    hook.remove()
    return seen


@pytest.mark.parametrize("use_cache", [True, False])
def test_a_bos_equal_to_the_pad_id_is_not_read_as_padding(use_cache):
    """Same weights, BOS id = pad id: every step scores exactly as in the model that has no pad id."""
    model = _model(TransformerConfig.tiny(vocab_size=11, pad_id=0), 0)
    twin = _model(TransformerConfig.tiny(vocab_size=11, pad_id=None), 1)
    twin.load_state_dict(model.state_dict())
    src = torch.tensor([[3, 5, 7, 2], [4, 4, 1, 9]])  # no pad id in the source: both models see all of it
    ours, reference = (_scores(m, src, 5, bos_id=0, use_cache=use_cache) for m in (model, twin))
    for step, (a, b) in enumerate(zip(ours, reference)):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=lambda m, step=step: f"step {step} scored differently: {m}")


def _first_eos(row: torch.Tensor, eos_id: int) -> int | None:
    hits = (row[1:] == eos_id).nonzero()
    return None if len(hits) == 0 else 1 + int(hits[0])


def _eos_case(config, batch, src_len, steps, seed, pick):
    """A model, a source, its plain greedy tokens and an EOS id that the plain run produces somewhere."""
    model = _model(config, seed)
    src = torch.randint(0, config.src_vocab_size, (batch, src_len), generator=torch.Generator().manual_seed(seed))
    plain = greedy_decode(model, src, steps, bos_id=1)
    row, col = pick
    eos_id = int(plain[row % batch, 1 + col % steps])
    return model, src, plain, eos_id


eos_cases = dict(config=model_configs(), batch=st.integers(1, 3), src_len=st.integers(1, 5), steps=st.integers(1, 6),
                 seed=seeds, pick=st.tuples(st.integers(0, 2), st.integers(0, 5)), use_cache=st.booleans())


@given(**eos_cases)
def test_tokens_up_to_eos_are_those_generated_without_eos(config, batch, src_len, steps, seed, pick, use_cache):
    """With eos_id each row is the plain greedy row up to and including its first EOS, then the pad id."""
    model, src, plain, eos_id = _eos_case(config, batch, src_len, steps, seed, pick)
    tokens, lengths = greedy_decode(model, src, steps, bos_id=1, eos_id=eos_id, pad_id=0, use_cache=use_cache)
    for b in range(batch):
        end = _first_eos(plain[b], eos_id)
        keep = plain.shape[1] if end is None else end + 1
        assert int(lengths[b]) == keep, f"row {b}: length {int(lengths[b])}, first EOS at {end}"
        assert torch.equal(tokens[b, :keep], plain[b, :keep]), f"row {b}: {tokens[b].tolist()} vs {plain[b].tolist()}"
        assert (tokens[b, keep:] == 0).all(), f"row {b} is not padded after its EOS: {tokens[b].tolist()}"


@given(**eos_cases)
def test_generation_stops_when_every_row_has_produced_eos(config, batch, src_len, steps, seed, pick, use_cache):
    """The decoder runs once per step until the last row finishes; the result is as wide as the longest row."""
    model, src, plain, eos_id = _eos_case(config, batch, src_len, steps, seed, pick)
    calls = []
    hook = model.decoder.register_forward_hook(lambda m, args, out: calls.append(out.shape[1]))
    tokens, lengths = greedy_decode(model, src, steps, bos_id=1, eos_id=eos_id, pad_id=0, use_cache=use_cache)
    hook.remove()
    ends = [_first_eos(plain[b], eos_id) for b in range(batch)]
    last = steps if None in ends else max(ends)
    assert len(calls) == last, f"{len(calls)} decoder calls, but the last row finished at step {last} (ends {ends})"
    assert tokens.shape == (batch, 1 + last) and int(lengths.max()) == 1 + last


def test_stripping_with_lengths_gives_each_row_up_to_its_eos():
    model = _model(TransformerConfig.tiny(vocab_size=11, pad_id=None), 0)
    src = torch.tensor([[3, 5, 7, 2], [4, 4, 1, 9]])
    plain = greedy_decode(model, src, 6, bos_id=1)
    eos_id = int(plain[0, 2])
    tokens, lengths = greedy_decode(model, src, 6, bos_id=1, eos_id=eos_id, pad_id=10)
    rows = [tokens[b, :n].tolist() for b, n in enumerate(lengths.tolist())]
    assert rows[0] == plain[0, :3].tolist() and rows[0][-1] == eos_id
    assert all(eos_id not in row[1:-1] for row in rows)


def test_eos_needs_a_pad_id_to_fill_finished_rows():
    model = _model(TransformerConfig.tiny(vocab_size=11, pad_id=None), 0)
    with pytest.raises(ValueError, match="eos_id needs a pad id"):
        greedy_decode(model, torch.tensor([[3, 5]]), 4, bos_id=1, eos_id=2)


def test_the_pad_id_comes_from_the_config_by_default():
    model = _model(TransformerConfig.tiny(vocab_size=11, pad_id=10), 0)
    src = torch.tensor([[3, 5, 7, 2], [4, 4, 1, 9]])
    plain = greedy_decode(model, src, 6, bos_id=1)
    tokens, lengths = greedy_decode(model, src, 6, bos_id=1, eos_id=int(plain[0, 1]))
    assert int(lengths[0]) == 2 and (tokens[0, 2:] == 10).all()
