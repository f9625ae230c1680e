"""A real pretrained Transformer, all-MiniLM-L6-v2 (6 layers x 12 heads, d_model 384), in this project's encoder.

First, a second oracle for the model: `transformer.pretrained` loads the weights into `InputEmbedding`
+ `Encoder`, and on generated word sequences (padded batches, two segments) its hidden states and
attention weights equal Hugging Face `BertModel`'s in float64 to FLOAT64_DEEP (rtol 1e-9, atol 1e-10).
Then measurements of what training did to the heads, in float32, computed once per run: trained
attention rows are concentrated where untrained ones are diffuse, some heads attend by position (the
previous or next token) and others do not, and most single heads can be removed with little change to
sentence embeddings. The sentences were written for this project (``properties.sentences``; the
experiments are in ``properties.bert_experiments``). Nothing is downloaded: the weights and tokenizer
come from the installed package. The oracle comparison guards ``transformer/``; the measurements are
evidence for their claims.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given

from properties._cache import computed_once
from properties.bert_experiments import (
    ATTENTION_SENTENCES,
    EXPERIMENT_SOURCES,
    PRUNE_SENTENCES,
    attention_measurements,
    head_measurements,
    minilm_identity,
    offline,
)
from properties.strategies import sentence_batches
from properties.tolerances import FALSE_ALARM_RATE, FLOAT64_DEEP
from properties.trained_fixtures import median_interval
from transformer.pretrained import (
    bert_config,
    bert_state_dict_to_ours,
    load_minilm,
    minilm_dir,
    minilm_tokenizer,
)

offline()  # before anything can import transformers or huggingface_hub
LITTLE = 0.1  # a head's removal "changes the output little": < a tenth of the paraphrase distance


# ---------------------------------------------------------------------------------------------------
# Fixtures: the two implementations (float64) and the shared measurements (float32, computed once)
# ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def hf_bert():
    offline()
    from transformers import BertModel
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    return BertModel.from_pretrained(str(minilm_dir()), attn_implementation="eager").double().eval()


@pytest.fixture(scope="session")
def our_bert():
    return load_minilm(torch.float64)


@pytest.fixture(scope="session")
def tokenizer():
    return minilm_tokenizer()


@pytest.fixture(scope="session")
def attention(request):
    return computed_once(request.config, "minilm-attention", attention_measurements, sources=EXPERIMENT_SOURCES,
                         extra=minilm_identity())


@pytest.fixture(scope="session")
def heads(request):
    return computed_once(request.config, "minilm-heads", head_measurements, sources=EXPERIMENT_SOURCES,
                         extra=minilm_identity())


def padded_batch(tokenizer, texts, second_segment_word, extra_padding):
    """ids, token types and key_allowed (B, S) for the texts, right-padded to the longest plus extra."""
    encodings = tokenizer.encode_batch(texts)
    S = max(len(e.ids) for e in encodings) + extra_padding
    ids = torch.zeros(len(texts), S, dtype=torch.long)
    types = torch.zeros(len(texts), S, dtype=torch.long)
    key_allowed = torch.zeros(len(texts), S, dtype=torch.bool)
    for i, (e, split) in enumerate(zip(encodings, second_segment_word)):
        n = len(e.ids)
        ids[i, :n], key_allowed[i, :n] = torch.tensor(e.ids), True
        if split is not None:  # segment B: the words from `split` on and the final [SEP]
            types[i, :n] = torch.tensor([int(w is None and j > 0 or w is not None and w >= split)
                                         for j, w in enumerate(e.word_ids)])
    return ids, types, key_allowed


# ---------------------------------------------------------------------------------------------------
# The oracle
# ---------------------------------------------------------------------------------------------------

@pytest.mark.claim("attn.definition", "mask.padding-zero-weight", kind="exact")
@given(batch=sentence_batches())
def test_encoder_with_loaded_weights_matches_transformers_bert(batch, hf_bert, our_bert, tokenizer):
    """Our InputEmbedding + post-LN Encoder with all-MiniLM-L6-v2's weights computes what transformers'
    BertModel computes: every hidden state (padded positions included) and every attention weight of
    every layer agree in float64 to FLOAT64_DEEP, for padded batches with two token-type segments.
    Padded keys get exactly zero weight in both. An independent implementation with trained (not random)
    weights: bugs that random weights hide (LayerNorm eps 1e-12 vs 1e-5, GELU tanh vs erf) show here."""
    texts, splits, extra = batch
    ids, types, key_allowed = padded_batch(tokenizer, texts, splits, extra)
    with torch.no_grad():
        ours = our_bert(ids, key_allowed, token_type_ids=types)
        theirs = hf_bert(ids, attention_mask=key_allowed.long(), token_type_ids=types, output_attentions=True)
    torch.testing.assert_close(ours, theirs.last_hidden_state, **FLOAT64_DEEP)
    for layer, (mine, reference) in enumerate(zip(our_bert.attention_weights(), theirs.attentions)):
        torch.testing.assert_close(mine, reference, **FLOAT64_DEEP, msg=lambda m: f"layer {layer} attention: {m}")
        assert (mine.masked_select(~key_allowed[:, None, None, :]) == 0).all(), "padded keys got weight"


def test_loader_refuses_what_it_cannot_map():
    """A BERT variant the encoder does not implement (tanh GELU, relative positions) or a parameter the
    name map does not know is an error, never a silently skipped weight."""
    config = {"hidden_act": "gelu", "position_embedding_type": "absolute", "vocab_size": 10, "hidden_size": 4,
              "num_attention_heads": 2, "intermediate_size": 8, "num_hidden_layers": 1, "layer_norm_eps": 1e-12,
              "max_position_embeddings": 16, "type_vocab_size": 2}
    assert bert_config(config).d_k == 2
    for change in ({"hidden_act": "gelu_new"}, {"position_embedding_type": "relative_key"}):
        with pytest.raises(ValueError, match="only BERT"):
            bert_config(config | change)
    with pytest.raises(KeyError, match="unexpected BERT parameter"):
        bert_state_dict_to_ours({"encoder.layer.0.attention.self.rotary.weight": torch.zeros(1)})


# ---------------------------------------------------------------------------------------------------
# attn.sparse-rows
# ---------------------------------------------------------------------------------------------------

def per_head(x: torch.Tensor) -> list[list[float]]:
    return [[round(float(v), 4) for v in row] for row in x]


@pytest.mark.claim("attn.sparse-rows", kind="empirical")
def test_trained_attention_rows_are_concentrated_untrained_rows_diffuse(attention, measure):
    """On 128 template sentences, per sentence and averaged over every head and real query row: the
    trained model's rows have lower entropy (normalised by log #keys) than the same encoder at random
    initialisation and than the trained weights shuffled within each tensor, and put more than half
    their mass on their 3 largest keys, while the randomly initialised rows put less than half there.
    Each comparison is a sign test over sentences (median interval, alpha = 1e-6 / 5 each); the
    sentences are independent draws from the template generator."""
    alpha = FALSE_ALARM_RATE / 5
    trained, random_init, shuffled = (attention[k] for k in ("trained", "random", "shuffled"))
    sentence_mean = lambda stats, key: stats[key].mean((1, 2))  # (N,) over layers and heads
    for baseline, stats in (("random_init", random_init), ("shuffled", shuffled)):
        diff = sentence_mean(trained, "entropy") - sentence_mean(stats, "entropy")
        med, low, high = median_interval(diff, alpha)
        measure("entropy_trained_minus", med, params={"baseline": baseline}, interval=[low, high], confidence=1 - alpha,
                n=ATTENTION_SENTENCES, statistic="median over sentences of the mean normalised row entropy difference")
        assert high < 0, f"trained rows not less diffuse than {baseline}: median {med:.3f} [{low:.3f}, {high:.3f}]"
    for name, stats, above in (("trained", trained, True), ("random_init", random_init, False)):
        med, low, high = median_interval(sentence_mean(stats, "top3"), alpha)
        measure("top3_mass", med, params={"attention": name}, interval=[low, high], confidence=1 - alpha, n=ATTENTION_SENTENCES,
                statistic="median over sentences of the mean mass on a row's 3 largest weights")
        assert (low > 0.5) if above else (high < 0.5), f"{name} top-3 mass {med:.3f} [{low:.3f}, {high:.3f}]"
    med, low, high = median_interval(sentence_mean(shuffled, "top3"), alpha)
    measure("top3_mass", med, params={"attention": "shuffled"}, interval=[low, high], confidence=1 - alpha, n=ATTENTION_SENTENCES)
    measure("mean_normalised_entropy", {k: round(float(v["entropy"].mean()), 4) for k, v in attention.items()})
    measure("mass_on_cls_and_sep", {k: round(float(v["special"].mean()), 4) for k, v in attention.items()},
            per_layer_trained=[round(float(v), 4) for v in trained["special"].mean((0, 2))])
    measure("heads_less_diffuse_than_their_shuffled_selves",
            int((trained["entropy"].mean(0) < shuffled["entropy"].mean(0)).sum()), of=trained["entropy"][0].numel())
    measure("trained_entropy_per_head", per_head(trained["entropy"].mean(0)))


# ---------------------------------------------------------------------------------------------------
# heads.specialise
# ---------------------------------------------------------------------------------------------------

@pytest.mark.claim("heads.specialise", kind="empirical")
def test_some_heads_attend_by_position_others_do_not(attention, measure):
    """A head is positional when its rows put more than half their mass on the previous token (or on the
    next); not positional when they put less than half on either. Each head's mean over the 128
    sentences gets a Hoeffding interval (values in [0, 1]) valid for all 72 heads x 2 offsets at once
    (union bound, alpha = 1e-6). In the trained model at least one head is positional and at least one
    is not; at random initialisation none is positional (so the positional heads were learnt)."""
    n, bounds = ATTENTION_SENTENCES, 2 * attention["trained"]["prev"][0].numel()
    half_width = math.sqrt(math.log(2 * bounds / FALSE_ALARM_RATE) / (2 * n))
    prev, nxt = attention["trained"]["prev"].mean(0), attention["trained"]["next"].mean(0)  # (L, H)
    positional = ((prev - half_width > 0.5) | (nxt - half_width > 0.5)).nonzero().tolist()
    other = ((prev + half_width < 0.5) & (nxt + half_width < 0.5)).nonzero().tolist()
    random_prev, random_next = attention["random"]["prev"].mean(0), attention["random"]["next"].mean(0)
    measure("positional_heads", positional, half_width=half_width, confidence=1 - FALSE_ALARM_RATE, n=n,
            definition="(layer, head) whose mean mass on the previous or the next token exceeds 1/2")
    measure("non_positional_heads", len(other), of=prev.numel())
    measure("mass_on_previous_token", per_head(prev))
    measure("mass_on_next_token", per_head(nxt))
    measure("random_init_max_neighbour_mass", float(torch.maximum(random_prev, random_next).max()))
    assert positional, f"no positional head: max previous-token mass {prev.max():.3f}, next {nxt.max():.3f}"
    assert other, "every head attends by position"
    assert (torch.maximum(random_prev, random_next) + half_width < 0.5).all(), "a random head is positional"


# ---------------------------------------------------------------------------------------------------
# heads.prunable
# ---------------------------------------------------------------------------------------------------

def ranking_agreement(similarities: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per sentence, the Spearman correlation between its similarities to the other sentences under two
    models: 1 when it ranks the others in the same order. Shape: (N, N) x 2 -> (N,)."""
    N = reference.shape[0]
    others = ~torch.eye(N, dtype=torch.bool)
    ranks = lambda s: s[others].view(N, N - 1).argsort(1).argsort(1).double()
    a, b = ranks(similarities), ranks(reference)
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


def whole_ranking_agreement(similarities: torch.Tensor, reference: torch.Tensor) -> float:
    """Spearman correlation of all sentence pairs' similarities (the STS-benchmark statistic)."""
    i, j = torch.triu_indices(*reference.shape, 1)
    a, b = similarities[i, j].argsort().argsort().double(), reference[i, j].argsort().argsort().double()
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


@pytest.mark.claim("heads.prunable", kind="empirical")
def test_most_single_heads_can_be_removed_with_little_change(heads, measure):
    """Removing one head (its output zeroed before W^O, Michel et al. 2019) moves a sentence's embedding
    (mean-pooled, unit norm, the model's intended output) by a cosine distance below a tenth of the
    distance to its own paraphrase for most of the 72 heads: in every one of the 24 sentences more than
    half of the heads qualify. Sign test: the median fraction exceeds 1/2 unless all 24 sentences are
    above it by chance, probability 2^-24 = 6e-8 <= 1e-6."""
    shift, paraphrase = heads["shift"], heads["paraphrase"]  # (L, H, N), (N,)
    fraction = (shift < LITTLE * paraphrase).double().mean((0, 1))  # (N,) heads that change s little
    med, low, high = median_interval(fraction, FALSE_ALARM_RATE)
    mean_shift = shift.mean(-1)
    measure("fraction_of_heads_changing_output_little", med, interval=[low, high],
            confidence=1 - FALSE_ALARM_RATE, n=PRUNE_SENTENCES, minimum=float(fraction.min()),
            definition="1 - cos(e, e without head) < 0.1 * (1 - cos(e, e of the paraphrase))")
    measure("single_head_shift_per_head", per_head(mean_shift), median=float(mean_shift.median()),
            largest=float(mean_shift.max()), median_paraphrase_distance=float(paraphrase.median()))
    assert low > 0.5, f"fraction of heads that change the output little: median {med:.3f} [{low:.3f}, {high:.3f}]"


@pytest.mark.claim("heads.prunable", kind="empirical")
def test_removing_least_important_heads_first_keeps_the_similarity_ranking_longer(heads, measure):
    """Heads removed together in increasing order of their single-removal effect (Michel et al.'s
    importance order): record how the ranking of sentence similarities follows the full model's
    (Spearman over all pairs; nearest neighbours), and how many heads go before it drops below 0.95.
    Compared with removing the same number of the most important heads first, each sentence ranks the
    others closer to the full model: for 6, 12 and 18 heads all 24 sentences agree more (sign tests,
    2^-24 each, alpha = 1e-6 / 3 in all)."""
    full = heads["least_first"][0]
    curve = [whole_ranking_agreement(s, full) for s in heads["least_first"]]
    nearest = lambda s: s.masked_fill(torch.eye(s.shape[0], dtype=torch.bool), -2).argmax(1)
    unchanged = [int((nearest(s) == nearest(full)).sum()) for s in heads["least_first"]]
    kept = [k for k, rho in zip(heads["least_first_k"], curve) if rho >= 0.95]
    measure("ranking_agreement_least_important_first", dict(zip(heads["least_first_k"], curve)),
            statistic="Spearman correlation of all pairwise cosine similarities with the full model's")
    measure("nearest_neighbour_unchanged_least_first", dict(zip(heads["least_first_k"], unchanged)), of=PRUNE_SENTENCES)
    measure("heads_removable_keeping_spearman", max(kept), params={"spearman": 0.95}, of=len(heads["removal_order"]),
            step=heads["least_first_k"][1])
    measure("ranking_agreement_most_important_first",
            {k: whole_ranking_agreement(s, full) for k, s in zip(heads["most_first_k"], heads["most_first"])})
    alpha = FALSE_ALARM_RATE / 3
    for k in (6, 12, 18):
        least = ranking_agreement(heads["least_first"][heads["least_first_k"].index(k)], full)
        most = ranking_agreement(heads["most_first"][heads["most_first_k"].index(k)], full)
        med, low, high = median_interval(least - most, alpha)
        measure("per_sentence_agreement_least_minus_most_first", med, params={"removed": k}, interval=[low, high],
                confidence=1 - alpha, n=PRUNE_SENTENCES)
        assert low > 0, f"removing {k} least important heads is not gentler: median {med:.3f} [{low:.3f}, {high:.3f}]"
