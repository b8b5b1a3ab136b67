"""``language_tokens``: the task in words, kept word by word. A pooled sentence vector mixes "red" and "blue"
of "stack the red cube on the blue cube" into one point, which for a held-out pairing is a point training
never saw; here learned queries attend over the language model's token states, so that one query can read
the moved object's word and another the target's, and z is made of slots a new pairing fills with values
seen in training (issue 21; BC-Z and token-level conditioning in docs/design-notes.md)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mtil.datasets.errors import UserError
from mtil.encoders.conditioners.base import TaskConditioner, mlp
from mtil.encoders.conditioners.language import LanguageConditioner

TOKENS = 16  # token states kept per instruction: [CLS] + up to 14 word pieces + [SEP] covers every suite text
QUERIES = 4  # learned queries (slots of z)
WIDTH = 128  # attention width


class LanguageTokensConditioner(LanguageConditioner):
    """(B, TOKENS * D) flattened token states (zero rows after the text; ``LanguageEncoder(tokens=TOKENS)``)
    -> keys/values (+ a learned position per token) -> ``QUERIES`` learned queries, masked attention ->
    concatenated slots -> MLP ``proj`` -> z (B, out_dim). Training and rollout read the task as the language
    kind does; only ``project`` differs."""

    language_tokens = TOKENS

    def __init__(self, cfg):
        TaskConditioner.__init__(self, cfg)  # not LanguageSpace's pooled-vector projection
        d_tok = cfg.lang_dim // TOKENS
        self.key = nn.Linear(d_tok, WIDTH)
        self.value = nn.Linear(d_tok, WIDTH)
        self.pos = nn.Parameter(torch.zeros(TOKENS, WIDTH))
        self.queries = nn.Parameter(torch.randn(QUERIES, WIDTH) / math.sqrt(WIDTH))
        self.proj = mlp(QUERIES * WIDTH, cfg.out_dim)

    @classmethod
    def check_config(cls, cfg) -> None:
        if cfg.lang_dim % TOKENS:
            raise UserError(f"conditioning kind language_tokens needs lang_dim = {TOKENS} x the token size "
                            f"(LanguageEncoder(tokens={TOKENS})), got {cfg.lang_dim}")

    def project(self, emb: Tensor) -> Tensor:
        self.check_embedding(emb, "flattened token states")
        tok = emb.view(emb.shape[0], TOKENS, -1)  # (B, N, D)
        present = tok.abs().sum(-1) > 0  # (B, N): zero rows are padding
        present[:, 0] = True  # (never an empty row of keys)
        k, v = self.key(tok) + self.pos, self.value(tok) + self.pos  # (B, N, W)
        att = torch.einsum("qw,bnw->bqn", self.queries, k) / math.sqrt(WIDTH)
        att = att.masked_fill(~present[:, None, :], float("-inf")).softmax(-1)  # (B, Q, N)
        return self.proj(torch.einsum("bqn,bnw->bqw", att, v).flatten(1))
