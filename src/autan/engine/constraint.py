"""Constrained decoding: the output must follow a grammar (JSON, a JSON schema, or a Lark grammar
such as a function call's), enforced token by token.

llguidance computes, before each token, the set of tokens that keep the output a valid prefix
of the grammar; everything else is masked out of the logits before sampling. When the grammar
is complete, only end-of-sequence remains allowed.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import Tensor

from autan.errors import AutanError


class ConstraintError(AutanError, ValueError):
    """A grammar or schema that cannot be used."""


class GrammarConstraint:
    """Output that parses as JSON; with a schema, JSON that validates against it; with `lark`,
    text that llguidance's Lark grammar accepts (`%json {...}` and `<[id]>` tokens included)."""

    def __init__(
        self,
        guidance_tokenizer: Any,
        schema: dict[str, Any] | None = None,
        *,
        lark: str | None = None,
        matcher: Any = None,
    ):
        import llguidance
        import llguidance.torch

        self._fill = llguidance.torch.fill_next_token_bitmask
        self._apply = llguidance.torch.apply_token_bitmask_inplace
        self.guidance_tokenizer = guidance_tokenizer
        self.what = "the grammar" if lark is not None else "the JSON schema"
        if matcher is None:
            try:
                if lark is not None:
                    grammar = llguidance.LLMatcher.grammar_from_lark(lark)
                else:
                    grammar = llguidance.LLMatcher.grammar_from_json_schema(
                        json.dumps(schema if schema is not None else {"type": "object"})
                    )
            except (ValueError, TypeError, RuntimeError) as e:  # llguidance refuses a grammar it cannot read
                raise ConstraintError(f"{self.what} cannot be used: {e}") from None
            matcher = llguidance.LLMatcher(guidance_tokenizer, grammar, log_level=0)
        self.matcher = matcher
        if self.matcher.is_error():
            raise ConstraintError(f"{self.what} cannot be used: {_first_line(self.matcher.get_error())}")
        self.vocab_size = guidance_tokenizer.vocab_size
        self.bitmask = llguidance.torch.allocate_token_bitmask(1, self.vocab_size)

    def check(self) -> None:
        """Compute the first token's mask once: a grammar whose lexer gives up on it (llguidance's
        limits on a pathological pattern) is refused before anything streams."""
        self._fill(self.matcher, self.bitmask, 0)
        if self.matcher.is_error():
            raise ConstraintError(f"{self.what} cannot be used: {_first_line(self.matcher.get_error())}")

    def copy(self) -> GrammarConstraint:
        """The same grammar at the same point, for another choice (no second compilation)."""
        copied = GrammarConstraint(self.guidance_tokenizer, matcher=self.matcher.deep_copy())
        copied.what = self.what
        return copied

    def apply(self, logits: Tensor) -> Tensor:
        """Logits (vocab,) with every token that would break the grammar at -inf."""
        self._fill(self.matcher, self.bitmask, 0)
        if self.matcher.is_error():
            raise ConstraintError(_first_line(self.matcher.get_error()))
        head = logits[: self.vocab_size].clone()[None]
        self._apply(head, self.bitmask)
        tail = torch.full((logits.shape[0] - self.vocab_size,), float("-inf"))  # padding rows of the model
        return torch.cat([head[0], tail])

    def advance(self, token: int) -> None:
        if not self.matcher.consume_token(token):
            error = _first_line(self.matcher.get_error())
            raise ConstraintError(f"token {token} was sampled outside the grammar: {error}")


def _first_line(error: str) -> str:
    """llguidance's message, without the parser state it dumps after it."""
    return error.strip().splitlines()[0] if error.strip() else "unknown error"
