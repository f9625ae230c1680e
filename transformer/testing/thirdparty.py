"""Rows for third-party libraries: small random-initialised configs in float64, nothing downloaded.

Every factory imports its library when called, so this module imports without them; rows are named
``<distribution>-<what>``. Attention rows call the library's own attention function with its own
mask convention, converted at the boundary exactly as the library converts its masks; model rows
wrap a whole model behind the adapter contract of ``transformer.testing.models``.

    faq-conformance transformer.testing.thirdparty:transformers_gpt2
"""

from __future__ import annotations

import functools

import torch
from torch import nn

VOCAB = 13

_HF_17306 = ("huggingface/transformers #17306 (discussion): the eager mask adds finfo(float16).min to the scores, "
             "and finfo.min plus a score below -16 is -inf in float16, so a query that sees no key gets NaN")
_X_FLOAT32 = ("x-transformers computes the attention softmax in float32 whatever the input dtype (attend.py: "
              "softmax with dtype=torch.float32, a precaution for float16), so float64 inputs get float32-accurate "
              "weights; no upstream issue found")
#: Rows that declare a convention, and why it is one (their fully-masked-row cell checks the declared behaviour).
CONVENTIONS = {
    "transformers-bert-eager-attention": ("a query that sees no key averages every value: transformers fills masked "
                                          "scores with finfo(dtype).min (masking_utils.eager_mask) on purpose, so "
                                          "that such rows stay finite"),
}
#: (row, property) -> why it fails upstream. Strict: a fix upstream turns the expected failure into an error.
KNOWN_FAILURES = {
    ("transformers-bert-eager-attention", "no-nan"): _HF_17306,
    ("x-transformers-attend", "definition"): _X_FLOAT32,
    ("x-transformers-attend", "convex-combination"): _X_FLOAT32,
    ("x-transformers-encoder", "model.permutation-equivariance"): _X_FLOAT32,
}


def _named(attend, name: str, description: str, **conventions):
    attend.conformance_name, attend.description = name, description
    if conventions:
        attend.conventions = {k.replace("_", "-"): v for k, v in conventions.items()}
    return attend


# ---------------------------------------------------------------------------------------------------
# Hugging Face transformers: BERT's attention functions (eager and sdpa) and whole models
# ---------------------------------------------------------------------------------------------------

class _AttentionModule(nn.Module):
    """What transformers' attention functions read from the calling module: training, is_causal."""

    def __init__(self):
        super().__init__()
        self.is_causal = False
        self.num_key_value_groups = 1
        self.eval()


def _hf_attention(implementation: str):
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    from transformers.models.bert import modeling_bert

    function = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, modeling_bert.eager_attention_forward)
    module = _AttentionModule()

    def attend(q, k, v, allowed):
        mask = allowed
        if allowed is not None and implementation == "eager":
            # masking_utils.eager_mask: the boolean mask cast to 0 where allowed, finfo(dtype).min elsewhere
            mask = torch.where(allowed, torch.zeros((), dtype=q.dtype), torch.finfo(q.dtype).min)
        out, weights = function(module, q, k, v, mask, scaling=q.shape[-1] ** -0.5, dropout=0.0)
        return out.transpose(1, 2), weights  # transformers returns (B, S_q, H, d)

    return attend


def transformers_bert_eager_attention():
    # A finite fill: a query with no visible key averages every value, on purpose (masking_utils
    # fills with finfo.min so that such rows never produce NaN).
    return _named(_hf_attention("eager"), "transformers-bert-eager-attention",
                  "transformers BERT eager_attention_forward with masking_utils.eager_mask's finfo.min fill",
                  fully_masked_row="uniform")


def transformers_bert_sdpa_attention():
    return _named(_hf_attention("sdpa"), "transformers-bert-sdpa-attention",
                  "transformers sdpa_attention_forward with a boolean mask (masking_utils.sdpa_mask)")


def _with_cache(module, cache) -> dict:
    """The cache keyword of a transformers forward: ``cache`` in recent releases, ``past_key_values`` before."""
    import inspect

    return {"cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values": cache}


def _returned_cache(out):
    return out.cache if getattr(out, "cache", None) is not None else out.past_key_values


class _HFAdapter:
    vocab_size = VOCAB
    positions = True
    encoder_decoder = False

    def _prepare(self, model):
        torch.manual_seed(0)
        self.model = model.double().eval()
        self.tied = bool(getattr(model.config, "tie_word_embeddings", False))
        return self

    def embedding_matrix(self):
        return self.model.get_input_embeddings().weight

    def output_matrix(self):
        return self.model.get_output_embeddings().weight


class TransformersBert(_HFAdapter):
    """BertForMaskedLM, 2 layers of width 8, 2 heads; ``encode`` is the encoder's last hidden state."""

    def __init__(self, attention: str):
        from transformers import BertConfig, BertForMaskedLM

        torch.manual_seed(0)
        config = BertConfig(vocab_size=VOCAB, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=16, max_position_embeddings=32, hidden_dropout_prob=0.0,
                            attention_probs_dropout_prob=0.0, attn_implementation=attention)
        self._prepare(BertForMaskedLM(config))
        self.conformance_name = f"transformers-bert-{attention}"
        self.description = f"transformers BertForMaskedLM ({attention} attention), random weights"

    def encode(self, ids, allowed):
        return self.model.bert(input_ids=ids, attention_mask=allowed.long()).last_hidden_state


class TransformersGPT2(_HFAdapter):
    """GPT2LMHeadModel, 2 layers of width 8, 2 heads; decode with and without its DynamicCache."""

    def __init__(self):
        from transformers import GPT2Config, GPT2LMHeadModel

        torch.manual_seed(0)
        config = GPT2Config(vocab_size=VOCAB, n_embd=8, n_layer=2, n_head=2, n_positions=32, resid_pdrop=0.0,
                            embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
        self._prepare(GPT2LMHeadModel(config))
        self.conformance_name = "transformers-gpt2"
        self.description = "transformers GPT2LMHeadModel, random weights"

    def decode(self, ids, source=None):
        return self.model.transformer(input_ids=ids, use_cache=False).last_hidden_state

    def decode_step(self, ids, cache, source=None):
        out = self.model.transformer(input_ids=ids, use_cache=True, **_with_cache(self.model.transformer, cache))
        return out.last_hidden_state, _returned_cache(out)


class TransformersT5(_HFAdapter):
    """T5ForConditionalGeneration, 2 + 2 layers of width 8, 2 heads; relative positions, tied embeddings."""

    encoder_decoder = True

    def __init__(self):
        from transformers import T5Config, T5ForConditionalGeneration

        torch.manual_seed(0)
        config = T5Config(vocab_size=VOCAB, d_model=8, d_kv=4, d_ff=16, num_layers=2, num_decoder_layers=2,
                          num_heads=2, dropout_rate=0.0, decoder_start_token_id=0, tie_word_embeddings=True)
        self._prepare(T5ForConditionalGeneration(config))
        self.conformance_name = "transformers-t5"
        self.description = "transformers T5ForConditionalGeneration, random weights"

    def encode(self, ids, allowed):
        return self.model.encoder(input_ids=ids, attention_mask=allowed.long()).last_hidden_state

    def _decoder(self, ids, source, cache, use_cache):
        src, src_allowed = source
        memory = self.encode(src, src_allowed)
        extra = _with_cache(self.model.decoder, cache) if use_cache else {}
        return self.model.decoder(input_ids=ids, encoder_hidden_states=memory, encoder_attention_mask=src_allowed.long(),
                                  use_cache=use_cache, **extra)

    def decode(self, ids, source=None):
        return self._decoder(ids, source, None, False).last_hidden_state

    def decode_step(self, ids, cache, source=None):
        if cache is None:
            from transformers import DynamicCache, EncoderDecoderCache

            cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        out = self._decoder(ids, source, cache, True)
        return out.last_hidden_state, _returned_cache(out)


def transformers_bert_eager():
    return TransformersBert("eager")


def transformers_bert_sdpa():
    return TransformersBert("sdpa")


def transformers_gpt2():
    return TransformersGPT2()


def transformers_t5():
    return TransformersT5()


# ---------------------------------------------------------------------------------------------------
# x-transformers: its Attend module (plain and flash paths) and whole models
# ---------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _attend_module(flash: bool):
    from x_transformers.attend import Attend

    return Attend(dropout=0.0, causal=False, flash=flash).eval()


def _x_attend(flash: bool):
    def attend(q, k, v, allowed):
        out, _ = _attend_module(flash)(q, k, v, mask=allowed)
        return out

    return attend


def x_transformers_attend():
    return _named(_x_attend(False), "x-transformers-attend", "x_transformers.attend.Attend(flash=False)")


def x_transformers_attend_flash():
    return _named(_x_attend(True), "x-transformers-attend-flash", "x_transformers.attend.Attend(flash=True)")


class XTransformersEncoder:
    """TransformerWrapper(Encoder) with no absolute positions: width 8, 2 layers, 2 heads."""

    vocab_size = VOCAB
    positions = False
    tied = False

    def __init__(self):
        from x_transformers import Encoder, TransformerWrapper

        torch.manual_seed(0)
        self.model = TransformerWrapper(num_tokens=VOCAB, max_seq_len=32, use_abs_pos_emb=False,
                                        attn_layers=Encoder(dim=8, depth=2, heads=2)).double().eval()
        self.conformance_name = "x-transformers-encoder"
        self.description = "x_transformers TransformerWrapper(Encoder), no absolute positions, random weights"

    def encode(self, ids, allowed):
        return self.model(ids, mask=allowed, return_embeddings=True)


class XTransformersDecoder:
    """TransformerWrapper(Decoder) with tied embeddings: width 8, 2 layers, 2 heads, its kv cache."""

    vocab_size = VOCAB
    positions = True
    tied = True

    def __init__(self):
        from x_transformers import Decoder, TransformerWrapper

        torch.manual_seed(0)
        self.model = TransformerWrapper(num_tokens=VOCAB, max_seq_len=32, tie_embedding=True,
                                        attn_layers=Decoder(dim=8, depth=2, heads=2)).double().eval()
        self.conformance_name = "x-transformers-decoder"
        self.description = "x_transformers TransformerWrapper(Decoder), tied embeddings, random weights"

    def decode(self, ids, source=None):
        return self.model(ids, return_embeddings=True)

    def decode_step(self, ids, cache, source=None):
        # The wrapper takes the whole sequence so far with its cache and, given a cache, attends from the
        # last token only (generation's one token at a time): a chunk is fed token by token.
        pieces = []
        if cache is None:
            states, intermediates = self.model(ids, return_embeddings=True, return_intermediates=True)
            return states, (ids, intermediates)
        seen, intermediates = cache
        for j in range(ids.shape[1]):
            seen = torch.cat([seen, ids[:, j:j + 1]], 1)
            states, intermediates = self.model(seen, return_embeddings=True, return_intermediates=True,
                                               cache=intermediates)
            pieces.append(states[:, -1:])
        return torch.cat(pieces, 1), (seen, intermediates)

    def embedding_matrix(self):
        return self.model.token_emb.emb.weight

    def output_matrix(self):
        # to_logits is ``t @ token_emb.emb.weight.t() * scale``: the output matrix is the embedding itself
        return self.model.token_emb.emb.weight


def x_transformers_encoder():
    return XTransformersEncoder()


def x_transformers_decoder():
    return XTransformersDecoder()


ATTENTION_FACTORIES = (transformers_bert_eager_attention, transformers_bert_sdpa_attention, x_transformers_attend,
                       x_transformers_attend_flash)
MODEL_FACTORIES = (transformers_bert_eager, transformers_bert_sdpa, transformers_gpt2, transformers_t5,
                   x_transformers_encoder, x_transformers_decoder)
