"""Model adapters with one classic mistake each, for the ``model.*`` properties to catch.

Each wraps this project's tiny Transformer (``transformer.testing.models.ProjectTransformerAdapter``)
and breaks exactly what its name says.
"""

from __future__ import annotations

import torch

from transformer.testing.models import ProjectTransformerAdapter


class _Broken(ProjectTransformerAdapter):
    def __init__(self, name: str, **kwargs):
        super().__init__(**kwargs)
        self.conformance_name = name


class PaddingIgnored(_Broken):
    def encode(self, ids, allowed):
        return self.model.encode(ids, None)  # the padding mask never reaches the encoder


class DecoderSeesTheFuture(_Broken):
    def decode(self, ids, source=None):
        src, src_allowed = source
        memory = self.model.encode(src, src_allowed)
        tgt_all = torch.ones_like(ids, dtype=torch.bool)
        # the decoder stack called with a full (not causal) self-attention mask
        y = self.model.tgt_embed(ids)
        from transformer.masks import key_padding_mask

        return self.model.decoder(y, memory, key_padding_mask(tgt_all), key_padding_mask(src_allowed), None)


class CacheIgnored(_Broken):
    def decode_step(self, ids, cache, source=None):
        return self.decode(ids, source), object()  # each chunk decoded as if it started the sequence


class PositionsNotDeclared(_Broken):
    def __init__(self, name):
        super().__init__(name)  # sinusoidal positions, but the adapter says there are none
        self.positions = False


class TiedByCopy(_Broken):
    def __init__(self, name):
        super().__init__(name)
        self._copy = self.model.tgt_embed.token.weight.detach().clone()

    def output_matrix(self):
        return self._copy  # the same values, a different tensor


def padding_ignored():
    return PaddingIgnored("broken-padding-ignored")


def decoder_sees_the_future():
    return DecoderSeesTheFuture("broken-decoder-sees-the-future")


def cache_ignored():
    return CacheIgnored("broken-cache-ignored")


def positions_not_declared():
    return PositionsNotDeclared("broken-positions-not-declared")


def tied_by_copy():
    return TiedByCopy("broken-tied-by-copy")
