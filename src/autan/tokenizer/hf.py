"""Tokenizers run by Hugging Face's `tokenizers`: from a `tokenizer.json` or built from a GGUF file.

GGUF files carry their vocabulary as metadata (`tokenizer.ggml.*`): `gpt2` files are byte-level
BPE (tokens + merges), `llama` files are SentencePiece (tokens + scores, byte fallback). Both are
rebuilt here as `tokenizers` objects, the way llama.cpp and transformers read them.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers
from tokenizers import Tokenizer as RustTokenizer

from autan.errors import ChatFormatError, CheckpointError, UnsupportedModelError
from autan.tokenizer import tool_calls
from autan.tokenizer.base import Message, Tool
from autan.tokenizer.template import ChatTemplate

OPEN, CLOSE = "\ue000", "\ue001"  # private-use characters around message text while looking for control tokens
# llama.cpp's token types
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
# fill-in-the-middle tokens (prefix, suffix, middle) as the code model families spell them, for
# tokenizers whose files do not name them: Qwen2.5-Coder, StarCoder and SmolLM, DeepSeek-Coder, CodeLlama
FIM_SPELLINGS = (
    ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
    ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
    ("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"),
    ("▁<PRE>", "▁<SUF>", "▁<MID>"),
    ("<PRE>", "<SUF>", "<MID>"),
)
# control tokens that end a generation wherever a GGUF vocabulary has them, as llama.cpp reads them
# (a code model ends a fill-in-the-middle answer with <|endoftext|>, not its chat's <|im_end|>)
END_OF_GENERATION = (
    "<|endoftext|>", "<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<EOT>", "▁<EOT>",
    "<｜end▁of▁sentence｜>", "<|fim_pad|>", "<|file_sep|>", "<|repo_name|>",
)  # fmt: skip
# GGUF's keys for them, newer first
FIM_KEYS = (
    ("tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.fim_suf_token_id", "tokenizer.ggml.fim_mid_token_id"),
    ("tokenizer.ggml.prefix_token_id", "tokenizer.ggml.suffix_token_id", "tokenizer.ggml.middle_token_id"),
)


class HFTokenizer:
    def __init__(
        self,
        tokenizer: RustTokenizer,
        *,
        bos_id: int | None,
        eos_ids: Sequence[int],
        chat_template: str | None,
        source: str,
        add_bos: bool = False,
        fim_ids: tuple[int, int, int] | None = None,
    ):
        self.tokenizer = tokenizer
        self.bos_id = bos_id
        self.add_bos = add_bos and bos_id is not None  # whether a text prompt starts with BOS, as the files say
        self.fim_ids = fim_ids or _fim_by_spelling(tokenizer)  # (prefix, suffix, middle)
        self.eos_ids = frozenset(eos_ids)
        self.eos_id = eos_ids[0] if eos_ids else None  # the files' own EOS (the others end a generation too)
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        self.source = source
        bos = tokenizer.id_to_token(bos_id) if bos_id is not None else ""
        eos = tokenizer.id_to_token(self.eos_id) if self.eos_id is not None else ""
        self.template = ChatTemplate(chat_template, bos or "", eos or "") if chat_template else None
        added = {t.content: i for i, t in tokenizer.get_added_tokens_decoder().items()}
        self.tool_format = tool_calls.detect(chat_template, added.get)

    @property
    def tool_call_id(self) -> int | None:
        """The control token that starts the model's function calls, where its format has one."""
        return self.tool_format.marker_id if isinstance(self.tool_format, tool_calls.MistralTemplate) else None

    def tool_state(self, text: str) -> tool_calls.State:
        """Whether an answer streamed so far is text, may be starting a call (hold it), or is one."""
        if isinstance(self.tool_format, tool_calls.Hermes | tool_calls.Llama3):
            return self.tool_format.state(text)
        return "text"  # a call starts at its control token (tool_call_id)

    def parse_tool_calls(self, ids: Sequence[int]) -> tuple[str, list[dict[str, Any]]]:
        """(the text before any call, the function calls) of an answer, in OpenAI's shape."""
        ids = [i for i in ids if i not in self.eos_ids]
        if isinstance(self.tool_format, tool_calls.MistralTemplate):
            return self.tool_format.parse_ids(ids, self.decode)
        if self.tool_format is None:
            return self.decode(ids), []
        return self.tool_format.parse(self.decode(ids))

    def tool_grammar(self, tools: Sequence[Tool], choice: Any, parallel: bool) -> str | None:
        """A Lark grammar (llguidance's) that holds the answer to calls of the tools `choice` asks
        for; None when the answer need not call one."""
        chosen = tool_calls.chosen_tools(tools, choice)
        if chosen is None:
            return None
        if self.tool_format is None:
            raise ChatFormatError(f"{self.source}'s chat template has no function calls to enforce")
        return self.tool_format.grammar(chosen, parallel)

    def encode(self, text: str, add_bos: bool = False) -> list[int]:
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        return [self.bos_id, *ids] if add_bos and self.bos_id is not None else ids

    def encode_fim(self, prompt: str, suffix: str) -> list[int]:
        """Fill-in-the-middle in the prefix-suffix-middle order every family's code models learned:
        the model writes what goes between `prompt` and `suffix`. Their text is text: one that
        spells a FIM or control token gets its characters."""
        if self.fim_ids is None:
            raise UnsupportedModelError(self.source, "has no fill-in-the-middle tokens")
        pre, suf, mid = self.fim_ids
        text = self._as_text.encode
        head = [self.bos_id] if self.add_bos and self.bos_id is not None else []
        return [*head, pre, *text(prompt, add_special_tokens=False).ids, suf,
                *text(suffix, add_special_tokens=False).ids, mid]  # fmt: skip

    def encode_chat(self, messages: Sequence[Message], tools: Sequence[Tool] | None = None) -> list[int]:
        """The prompt of a conversation. Text from a message is text: a message that spells a
        control token (`<|im_end|>`) gets that token's characters, never the token, so nobody can
        forge a turn. Only the template's own markup becomes control tokens."""
        if self.template is None:
            raise UnsupportedModelError(self.source, "has no chat template: use raw text prompts with this model")
        messages = [_arguments_as_objects(m) for m in messages]
        if not any(self._spells_control_token(m) for m in messages):
            return self.encode(self.template.render(messages, tools))
        return self._encode_marked(messages, tools)

    @functools.cached_property
    def control_tokens(self) -> dict[str, int]:
        """The special (control) tokens, by their text."""
        decoder = self.tokenizer.get_added_tokens_decoder()
        return {t.content: i for i, t in decoder.items() if t.special}

    @functools.cached_property
    def max_token_bytes(self) -> int:
        """An upper bound on the UTF-8 bytes one token of text stands for."""
        pieces = (self.tokenizer.id_to_token(i) or "" for i in range(self.vocab_size))
        return max((len(p.encode()) for p in pieces), default=1)

    def _spells_control_token(self, message: Message) -> bool:
        """Whether the message's content spells a control token; its other fields may not."""
        found = False
        for key, value in message.items():
            text = json.dumps(value, ensure_ascii=False) if key == "tool_calls" else value
            if not isinstance(text, str) or not any(token in text for token in self.control_tokens):
                continue
            if key != "content":
                raise ChatFormatError(f"a message's {key} spells a control token of this model, which it may not")
            found = True
        return found

    def _encode_marked(self, messages: Sequence[Message], tools: Sequence[Tool] | None) -> list[int]:
        """Render with each message's content between two markers, find the control tokens of the
        template's markup (those outside every marked span), and encode the text between them
        with control tokens read as text: for text without forged tokens this is exactly what
        encoding the whole prompt gives, since the tokenizer splits at control tokens too."""
        if any(OPEN in str(m.get("content")) or CLOSE in str(m.get("content")) for m in messages):
            raise ChatFormatError("a message holds U+E000 or U+E001, which autan reserves to mark message text")
        marked = [
            {**m, "content": f"{OPEN}{m['content']}{CLOSE}"} if isinstance(m.get("content"), str) else m
            for m in messages
        ]
        text, spans = _unmark(self.template.render(marked, tools))
        pattern = re.compile("|".join(re.escape(t) for t in sorted(self.control_tokens, key=len, reverse=True)))
        ids, at = [], 0
        for match in pattern.finditer(text):
            if any(a < match.end() and match.start() < b for a, b in spans):
                continue  # spelled by a message: text
            ids += self._as_text.encode(text[at : match.start()], add_special_tokens=False).ids
            ids.append(self.control_tokens[match.group()])
            at = match.end()
        return ids + self._as_text.encode(text[at:], add_special_tokens=False).ids

    @functools.cached_property
    def _as_text(self) -> RustTokenizer:
        """A copy of the tokenizer that reads control tokens' text as text (a separate object: the
        flag is the tokenizer's own, and other threads encode with the original)."""
        copy = RustTokenizer.from_str(self.tokenizer.to_str())
        copy.encode_special_tokens = True
        return copy

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    @functools.cache  # noqa: B019  (one per tokenizer, which lives as long as its model)
    def guidance_tokenizer(self) -> Any:
        """The vocabulary as llguidance needs it for constrained decoding (built once, ~1 s)."""
        import llguidance

        return llguidance.LLTokenizer(
            self.tokenizer.to_str(), n_vocab=self.vocab_size, eos_token=sorted(self.eos_ids) or None
        )

    @classmethod
    def from_directory(cls, directory: Path) -> HFTokenizer:
        path = directory / "tokenizer.json"
        try:
            tokenizer = RustTokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises a bare Exception for every parse failure
            raise CheckpointError(path, f"not a readable tokenizer.json: {e}") from None
        config: dict[str, Any] = {}
        if (directory / "tokenizer_config.json").is_file():
            config = json.loads((directory / "tokenizer_config.json").read_text())

        def token_id(key: str) -> int | None:
            token = config.get(key)
            token = token.get("content") if isinstance(token, dict) else token
            return tokenizer.token_to_id(token) if token else None

        eos, bos = token_id("eos_token"), token_id("bos_token")
        template = config.get("chat_template")
        if isinstance(template, list):  # named templates: take the default one
            template = next((t["template"] for t in template if t.get("name") == "default"), None)
        add_bos = config.get("add_bos_token")
        if not isinstance(add_bos, bool):  # as transformers does: whatever the post-processor puts first
            add_bos = bos is not None and tokenizer.encode("a", add_special_tokens=True).ids[:1] == [bos]
        return cls(
            tokenizer,
            bos_id=bos,
            eos_ids=[eos] if eos is not None else [],
            chat_template=template,
            source=str(path),
            add_bos=add_bos,
        )

    @classmethod
    def from_gguf_metadata(cls, path: str | Path, meta: Mapping[str, Any]) -> HFTokenizer:
        kind = meta.get("tokenizer.ggml.model")
        tokens: list[str] = list(meta.get("tokenizer.ggml.tokens") or [])
        if not tokens:
            raise CheckpointError(path, "has no tokenizer.ggml.tokens: it carries no tokenizer")
        types = list(meta.get("tokenizer.ggml.token_type") or [NORMAL] * len(tokens))
        if kind == "gpt2":
            merges = list(meta.get("tokenizer.ggml.merges") or [])
            tokenizer = _byte_level_bpe(tokens, merges, meta.get("tokenizer.ggml.pre"))
        elif kind == "llama":
            tokenizer = _sentencepiece_bpe(
                tokens,
                list(meta["tokenizer.ggml.scores"]),
                types,
                bool(meta.get("tokenizer.ggml.add_space_prefix", True)),
            )
        else:
            raise UnsupportedModelError(path, f"tokenizer.ggml.model '{kind}' is not supported (gpt2, llama)")
        tokenizer.add_special_tokens(
            [AddedToken(tokens[i], special=True, normalized=False) for i, t in enumerate(types) if t == CONTROL]
        )
        tokenizer.add_tokens(
            [AddedToken(tokens[i], special=False, normalized=False) for i, t in enumerate(types) if t == USER_DEFINED]
        )
        bos = meta.get("tokenizer.ggml.bos_token_id")
        eos = [meta[k] for k in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id") if k in meta]
        eos += [i for i, t in enumerate(tokens) if types[i] == CONTROL and t in END_OF_GENERATION]
        # llama.cpp's default where the file says nothing: SentencePiece vocabularies start with BOS
        add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", kind == "llama"))
        fim = next((tuple(int(meta[k]) for k in keys) for keys in FIM_KEYS if all(k in meta for k in keys)), None)
        return cls(
            tokenizer,
            bos_id=bos,
            eos_ids=[int(e) for e in eos],
            chat_template=meta.get("tokenizer.chat_template"),
            source=str(path),
            add_bos=add_bos,
            fim_ids=fim,  # type: ignore[arg-type]
        )


def _fim_by_spelling(tokenizer: RustTokenizer) -> tuple[int, int, int] | None:
    for spelling in FIM_SPELLINGS:
        ids = [tokenizer.token_to_id(t) for t in spelling]
        if all(i is not None for i in ids):
            return ids[0], ids[1], ids[2]  # type: ignore[return-value]
    return None


def _arguments_as_objects(message: Message) -> Message:
    """Hugging Face's templates write a call's arguments with `tojson`: they expect an object,
    where OpenAI's messages carry a JSON string."""
    calls = message.get("tool_calls")
    if not calls:
        return message
    fixed = []
    for c in calls:
        function = c.get("function") if isinstance(c, dict) else None
        if isinstance(function, dict) and isinstance(function.get("arguments"), str):
            with contextlib.suppress(json.JSONDecodeError):  # not JSON: the template writes the string
                function = {**function, "arguments": json.loads(function["arguments"])}
            c = {**c, "function": function}
        fixed.append(c)
    return {**message, "tool_calls": fixed}


def _unmark(marked: str) -> tuple[str, list[tuple[int, int]]]:
    """The text without its markers, and the spans they enclosed."""
    parts = re.split(f"([{OPEN}{CLOSE}])", marked)
    text, spans, start = [], [], None
    length = 0
    for part in parts:
        if part == OPEN:
            start = length
        elif part == CLOSE:
            if start is None:
                raise ChatFormatError("the chat template cut a message's text apart; remove control tokens from it")
            spans.append((start, length))
            start = None
        else:
            text.append(part)
            length += len(part)
    if start is not None:  # a prefix message continued: its text runs to the end
        spans.append((start, length))
    return "".join(text), spans


# Qwen2's split before byte-level BPE (its tokenizer.json; llama.cpp's "qwen2" pre-tokenizer):
# GPT-2's, but case-blind contractions, one digit at a time and newlines kept with what precedes.
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)


def _byte_level_bpe(tokens: list[str], merges: list[str], pre: str | None = None) -> RustTokenizer:
    alphabet = set(pre_tokenizers.ByteLevel.alphabet())
    spelled = [t if set(t) <= alphabet else _byte_spelling(t) for t in tokens]
    vocab = {token: i for i, token in enumerate(spelled)}
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    tokenizer = RustTokenizer(models.BPE(vocab, pairs))
    if pre == "qwen2":
        tokenizer.normalizer = normalizers.NFC()
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def _byte_spelling(token: str) -> str:
    """A token written in plain text, respelled in byte-level BPE's printable byte alphabet."""
    table = _byte_table()
    return "".join(table[b] for b in token.encode("utf-8"))


def _byte_table() -> dict[int, str]:
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {b: chr(b) for b in printable}, 0
    for b in range(256):
        if b not in table:
            table[b], extra = chr(256 + extra), extra + 1
    return table


def _sentencepiece_bpe(
    tokens: list[str], scores: list[float], types: list[int], add_space_prefix: bool
) -> RustTokenizer:
    """SentencePiece BPE: the merges are implied by the vocabulary, best-scoring merged piece first."""
    vocab = {token: i for i, token in enumerate(tokens)}
    merges = []
    for token, score in zip(tokens, scores, strict=True):
        local = [
            (token[:i], token[i:], score) for i in range(1, len(token)) if token[:i] in vocab and token[i:] in vocab
        ]
        merges.extend(sorted(local, key=lambda m: (vocab[m[0]], vocab[m[1]])))
    merges.sort(key=lambda m: (m[2], len(m[0]), len(m[1])), reverse=True)
    unk = next((tokens[i] for i, t in enumerate(types) if t == UNKNOWN), None)
    model = models.BPE(
        vocab, [(left, right) for left, right, _ in merges], unk_token=unk, fuse_unk=True, byte_fallback=True
    )
    tokenizer = RustTokenizer(model)
    # SentencePiece writes spaces as "▁" and, with add_space_prefix, puts one before the text. Like
    # llama.cpp, the prefix goes before every piece of text that follows a special token (tokenizers
    # runs the normalizer on each such piece), so a leading space in the text is kept, not merged.
    spaces = normalizers.Replace(" ", "▁")
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), spaces]) if add_space_prefix else spaces
    strip = [decoders.Strip(content=" ", left=1)] if add_space_prefix else []
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), *strip]
    )
    return tokenizer
