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

import pytest
import torch
from hypothesis import given

from properties._cache import computed_once
from properties.bert_experiments import (
    ATTENTION_SENTENCES,
    EXPERIMENT_SOURCES,
    PRUNE_SENTENCES,
    RANK_SENTENCES,
    attention_measurements,
    head_measurements,
    minilm_identity,
    offline,
)
from properties.stats import (
    median_interval,
    median_interval_power,
)
from properties.strategies import sentence_batches
from properties.tolerances import (
    ALPHA_HEADS_PRUNABLE,
    ALPHA_HEADS_SPECIALISE,
    ALPHA_SPARSE_ROWS,
    FLOAT64_DEEP,
)
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
        torch.testing.assert_close(mine, reference, **FLOAT64_DEEP, msg=lambda m, layer=layer: f"layer {layer} attention: {m}")
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
    Each comparison is a sign test over sentences (median interval, ALPHA_SPARSE_ROWS / 4 each, its power if
    9 sentences in 10 go the claimed way); the sentences are independent draws from the template generator."""
    alpha = ALPHA_SPARSE_ROWS / 4
    power = median_interval_power(ATTENTION_SENTENCES, alpha, 0.9)
    trained, random_init, shuffled = (attention[k] for k in ("trained", "random", "shuffled"))
    def sentence_mean(stats, key):  # (N,) over layers and heads
        return stats[key].mean((1, 2))

    for baseline, stats in (("random_init", random_init), ("shuffled", shuffled)):
        diff = sentence_mean(trained, "entropy") - sentence_mean(stats, "entropy")
        med, low, high = median_interval(diff, alpha)
        measure("entropy_trained_minus", med, params={"baseline": baseline}, interval=[low, high], alpha=alpha,
                power=power, alternative=f"trained rows no less diffuse than {baseline} ones (median difference >= 0); power: if "
                            "9 sentences in 10 go the claimed way",
                n=ATTENTION_SENTENCES, statistic="median over sentences of the mean normalised row entropy difference")
        assert high < 0, f"trained rows not less diffuse than {baseline}: median {med:.3f} [{low:.3f}, {high:.3f}]"
    for name, stats, above in (("trained", trained, True), ("random_init", random_init, False)):
        med, low, high = median_interval(sentence_mean(stats, "top3"), alpha)
        measure("top3_mass", med, params={"model": name}, interval=[low, high], alpha=alpha, power=power,
                alternative="a median top-3 mass on the other side of 1/2; power: if 9 sentences in 10 go the claimed way",
                n=ATTENTION_SENTENCES, statistic="median over sentences of the mean mass on a row's 3 largest weights")
        assert (low > 0.5) if above else (high < 0.5), f"{name} top-3 mass {med:.3f} [{low:.3f}, {high:.3f}]"
    med, low, high = median_interval(sentence_mean(shuffled, "top3"), alpha)
    measure("top3_mass", med, params={"model": "shuffled"}, interval=[low, high], confidence=1 - alpha,
            n=ATTENTION_SENTENCES)
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
    next); not positional when they put less than half on either, judged by the median over the 128 sentences
    of a head's mean mass: a sign-test interval per head, offset and model (72 x 2 x 2), valid for all at once
    (union bound, ALPHA_HEADS_SPECIALISE in all). In the trained model at least one head is positional and at
    least one is not; at random initialisation none is positional (so the positional heads were learnt)."""
    per_bound = ALPHA_HEADS_SPECIALISE / (4 * attention["trained"]["prev"][0].numel())

    def bounds(model: str, key: str) -> tuple[torch.Tensor, torch.Tensor]:  # (N, L, H) -> low, high (L, H)
        x = attention[model][key]
        cells = [median_interval(x[:, l, h], per_bound) for l in range(x.shape[1]) for h in range(x.shape[2])]
        return (torch.tensor([c[i] for c in cells]).view(x.shape[1:]) for i in (1, 2))

    (low_prev, high_prev), (low_next, high_next) = bounds("trained", "prev"), bounds("trained", "next")
    positional = ((low_prev > 0.5) | (low_next > 0.5)).nonzero().tolist()
    other = ((high_prev < 0.5) & (high_next < 0.5)).nonzero().tolist()
    (_, high_rp), (_, high_rn) = bounds("random", "prev"), bounds("random", "next")
    prev, nxt = attention["trained"]["prev"].mean(0), attention["trained"]["next"].mean(0)  # (L, H) means
    random_prev, random_next = attention["random"]["prev"].mean(0), attention["random"]["next"].mean(0)
    best = torch.maximum(low_prev, low_next)
    l, h = divmod(int(best.flatten().argmax()), best.shape[1])
    top = (low_prev, high_prev) if low_prev[l, h] >= low_next[l, h] else (low_next, high_next)
    measure("positional_heads", len(positional), interval=[float(top[0][l, h]), float(top[1][l, h])],
            alpha=ALPHA_HEADS_SPECIALISE, power=median_interval_power(ATTENTION_SENTENCES, per_bound, 0.9),
            alternative="no head puts more than half its mass on a neighbour in most sentences; power: for a head that "
                        "does so in 9 sentences in 10",
            heads=positional, n=ATTENTION_SENTENCES, best_head=[l, h],
            definition="(layer, head) whose median over sentences of the mean mass on the previous or the next token "
                       "exceeds 1/2; interval: that median's for the clearest head")
    measure("non_positional_heads", len(other), of=prev.numel())
    measure("mass_on_previous_token", per_head(prev))
    measure("mass_on_next_token", per_head(nxt))
    measure("random_init_max_neighbour_mass", float(torch.maximum(random_prev, random_next).max()))
    assert positional, f"no positional head: max previous-token mass {prev.max():.3f}, next {nxt.max():.3f}"
    assert other, "every head attends by position"
    assert ((high_rp < 0.5) & (high_rn < 0.5)).all(), "a random head is positional"


# ---------------------------------------------------------------------------------------------------
# heads.prunable
# ---------------------------------------------------------------------------------------------------

def ranking_agreement(similarities: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per sentence, the Spearman correlation between its similarities to the other sentences under two
    models: 1 when it ranks the others in the same order. Shape: (N, N) x 2 -> (N,)."""
    N = reference.shape[0]
    others = ~torch.eye(N, dtype=torch.bool)
    def ranks(s):
        return s[others].view(N, N - 1).argsort(1).argsort(1).double()

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
    half of the heads qualify. Sign test over the sentences at ALPHA_HEADS_PRUNABLE / 4, its power recorded if each
    sentence has more than half of its heads qualifying with probability 0.9."""
    alpha = ALPHA_HEADS_PRUNABLE / 4
    shift, paraphrase = heads["shift"], heads["paraphrase"]  # (L, H, N), (N,)
    fraction = (shift < LITTLE * paraphrase).double().mean((0, 1))  # (N,) heads that change s little
    med, low, high = median_interval(fraction, alpha)
    mean_shift = shift.mean(-1)
    measure("fraction_of_heads_changing_output_little", med, interval=[low, high], alpha=alpha,
            power=median_interval_power(PRUNE_SENTENCES, alpha, 0.9),
            alternative="at most half of the heads change a sentence's embedding little (median fraction <= 1/2); "
                        "power: if more than half qualify in each sentence with probability 0.9",
            n=PRUNE_SENTENCES, minimum=float(fraction.min()), maximum=float(fraction.max()), heads=shift[..., 0].numel(),
            definition="1 - cos(e, e without head) < 0.1 * (1 - cos(e, e of the paraphrase))")
    last_layer = mean_shift.shape[0] - 1
    largest = mean_shift.flatten().argsort(descending=True)
    in_last = int(next((i for i, h in enumerate(largest.tolist()) if h // mean_shift.shape[1] != last_layer), len(largest)))
    measure("single_head_shift_per_head", per_head(mean_shift), median=float(mean_shift.median()),
            largest=float(mean_shift.max()), median_paraphrase_distance=float(paraphrase.median()),
            largest_effects_all_in_last_layer=in_last)
    assert low > 0.5, f"fraction of heads that change the output little: median {med:.3f} [{low:.3f}, {high:.3f}]"


@pytest.mark.claim("heads.prunable", kind="empirical")
def test_removing_least_important_heads_first_keeps_the_similarity_ranking_longer(heads, measure):
    """Heads removed together in increasing order of their single-removal effect (Michel et al.'s
    importance order): record how the ranking of sentence similarities follows the full model's
    (Spearman over all pairs; nearest neighbours), and how many heads go before it drops below 0.95.
    Compared with removing the same number of the most important heads first, each sentence ranks the
    others closer to the full model: for 6, 12 and 18 heads the median per-sentence difference is positive (sign
    tests at ALPHA_HEADS_PRUNABLE / 4 each). The order is ranked on the first RANK_SENTENCES sentences and every
    curve is scored on the others, so no sentence both chooses the heads and judges their removal."""
    full = heads["least_first"][0]
    scored = full.shape[0]
    curve = [whole_ranking_agreement(s, full) for s in heads["least_first"]]
    def nearest(s):
        return s.masked_fill(torch.eye(s.shape[0], dtype=torch.bool), -2).argmax(1)

    unchanged = [int((nearest(s) == nearest(full)).sum()) for s in heads["least_first"]]
    kept = [k for k, rho in zip(heads["least_first_k"], curve) if rho >= 0.95]
    for k, rho, same in zip(heads["least_first_k"], curve, unchanged):
        measure("ranking_agreement_least_important_first", rho, params={"removed": k}, nearest_unchanged=same,
                of=scored, statistic="Spearman correlation of all pairwise cosine similarities with the full model's")
    measure("heads_removable_keeping_spearman", max(kept), params={"spearman": 0.95}, of=len(heads["removal_order"]),
            step=heads["least_first_k"][1], ranked_on=RANK_SENTENCES, scored_on=scored)
    for k, s_ in zip(heads["most_first_k"], heads["most_first"]):
        measure("ranking_agreement_most_important_first", whole_ranking_agreement(s_, full), params={"removed": k})
    alpha = ALPHA_HEADS_PRUNABLE / 4
    for k in (6, 12, 18):
        least = ranking_agreement(heads["least_first"][heads["least_first_k"].index(k)], full)
        most = ranking_agreement(heads["most_first"][heads["most_first_k"].index(k)], full)
        med, low, high = median_interval(least - most, alpha)
        measure("per_sentence_agreement_least_minus_most_first", med, params={"removed": k}, interval=[low, high],
                alpha=alpha, power=median_interval_power(scored, alpha, 0.9),
                alternative="removing the least important heads first is no gentler (median difference <= 0); power: if "
                            "each sentence favours it with probability 0.9",
                n=scored, favouring=int((least > most).sum()))
        assert low > 0, f"removing {k} least important heads is not gentler: median {med:.3f} [{low:.3f}, {high:.3f}]"
