"""Constrained decoding: an answer that is always in the ticket format.

The answer's first two lines are closed fields: ``category: `` one of the dataset's
categories, ``error_code: `` ``E-`` and three digits or ``none``, then ``reply: `` and free
text. Here that header is a small automaton over characters (a trie of its strings, each
field's end joined to the next field's start), and at each step only tokens whose text
keeps the answer inside it may be chosen; after ``reply: `` any token may follow, and
the end token once the reply has a visible character.

Which tokens fit a state is found by walking the automaton along the tokenizer's
vocabulary sorted as strings: the tokens that start with a prefix form one contiguous
range, so each allowed character narrows a range by bisection and a dead end is dropped
at once. Every state's tokens are found when the format is built, so during decoding
the mask is a lookup, and a format the vocabulary cannot write fails before the first
answer. That is the index ``outlines`` precomputes per state of a regular expression;
llama.cpp's grammars instead test candidate tokens against a grammar at each step,
and onnxruntime-genai's guidance runs the llguidance engine. A finite header needs
neither a regex compiler nor a grammar engine: a trie is the whole automaton, and stays
readable.

It assumes each token's own text is what the token adds to the decoded answer: true for
byte-level BPE tokenizers (SmolLM2, Llama 3, Qwen 2.5). A SentencePiece tokenizer drops
the leading "▁" when a token is decoded alone, so its texts would need that space put back.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..data import CATEGORIES, NO_CODE


@dataclass(eq=False)
class Node:
    """A state of the header automaton: the characters that may come next."""

    children: dict[str, Node] = field(default_factory=dict)


REPLY = Node()  # past the header: free text (a sentinel; the walk stops here)


def _chain(fields: Sequence[Iterable[str]]) -> Node:
    """An automaton accepting one string of each field in turn (a literal is a field of one)."""
    follow = REPLY
    for options in reversed(fields):
        root = Node()
        for option in options:
            if not option:
                raise ValueError("A format field may not offer the empty string.")
            node = root
            for char in option[:-1]:
                node = node.children.setdefault(char, Node())
                if node is follow:  # an earlier option ended here
                    raise ValueError(f"Another option is a prefix of format option {option!r} in the same field.")
            if option[-1] in node.children:
                raise ValueError(f"Format option {option!r} is a prefix of another option of the same field.")
            node.children[option[-1]] = follow
        follow = root
    return follow


def ticket_header(categories: Sequence[str] = CATEGORIES) -> Node:
    """The course's answer format up to the reply (see ``data.format_target``)."""
    codes = [NO_CODE] + [f"E-{i:03d}" for i in range(1000)]
    return _chain([["category: "], categories, ["\nerror_code: "], codes, ["\nreply: "]])


class TicketFormat:
    """The format's token-level rules for one tokenizer; ``cursor()`` starts one answer."""

    def __init__(self, token_texts: Sequence[str], eos_ids: set[int], header: Node | None = None) -> None:
        if not eos_ids:
            raise ValueError("TicketFormat needs the model's end-of-answer token ids.")
        self.texts = list(token_texts)
        self.eos_ids = set(eos_ids)
        self.header = header or ticket_header()
        usable = [i for i, text in enumerate(self.texts) if text and i not in self.eos_ids]
        usable.sort(key=lambda i: self.texts[i])
        self._ids = usable  # token ids sorted by their text
        self._keys = [self.texts[i] for i in usable]
        self._allowed: dict[int, np.ndarray] = {}
        self._index_every_state()
        # In the reply, the end token waits for a visible character (format_ok requires one).
        self.not_eos = np.array(sorted(set(range(len(self.texts))) - self.eos_ids), dtype=np.int64)

    @classmethod
    def for_model(cls, lm) -> TicketFormat:
        """Built from a runtime model (``OnnxCausalLM`` / ``TorchCausalLM``)."""
        return cls(lm.token_texts(), lm.eos_ids)

    @classmethod
    def for_tokenizer(cls, tokenizer) -> TicketFormat:
        """Built from a transformers tokenizer, for a PyTorch model decoded without a runtime wrapper."""
        return cls(hf_token_texts(tokenizer), {tokenizer.eos_token_id})

    def _index_every_state(self) -> None:
        """Find the tokens of every state a token can end in now (a fraction of a second for
        the course's format), so decoding only looks them up; and refuse a format the
        vocabulary cannot write (a dead end, or a part no token sequence reaches) before the
        first answer, naming where."""
        todo, covered = [(self.header, "")], set()
        while todo:
            node, text = todo.pop()
            if node is REPLY or id(node) in self._allowed:
                continue
            found: list[int] = []
            ends: dict[int, tuple[Node, str]] = {}
            self._walk(node, "", 0, len(self._keys), found, ends, covered)
            if not found:
                raise ValueError(
                    f"No token of the vocabulary continues the answer {text!r} inside the format. "
                    "Fix: change the format's fields, or use a tokenizer that can write them."
                )
            self._allowed[id(node)] = np.array(sorted(found), dtype=np.int64)
            todo.extend((end, text + rest) for end, rest in ends.values())
        stack = [(self.header, "")]
        while stack:  # every character of the format lies on some token path
            node, text = stack.pop()
            if id(node) not in covered:
                raise ValueError(
                    f"No sequence of tokens writes {text!r}, so that part of the format can never be chosen. "
                    "Fix: change the format's fields, or use a tokenizer that can write them."
                )
            stack.extend((child, text + char) for char, child in node.children.items() if child is not REPLY)

    def allowed(self, node: Node) -> np.ndarray:
        """Token ids whose whole text can follow header state ``node`` (sorted)."""
        return self._allowed[id(node)]

    def _walk(self, node: Node, prefix: str, lo: int, hi: int, found: list, ends: dict, covered: set) -> None:
        # Every key in [lo, hi) starts with ``prefix``, which brought the automaton to ``node``.
        if node is REPLY:
            found.extend(self._ids[lo:hi])  # the rest of each token is free text
            return
        covered.add(id(node))
        if prefix and lo < hi and self._keys[lo] == prefix:
            found.append(self._ids[lo])  # a token ending exactly here: the next state is ``node``
            ends[id(node)] = (node, prefix)
        for char, child in node.children.items():
            start = bisect.bisect_left(self._keys, prefix + char, lo, hi)
            end = bisect.bisect_left(self._keys, prefix + char + "\U0010ffff", start, hi)
            if start < end:
                self._walk(child, prefix + char, start, end, found, ends, covered)

    def follow(self, text: str) -> Node:
        """The state after ``text`` from the start (``REPLY`` once the header is complete);
        an error if ``text`` leaves the format."""
        node = self.header
        for char in text:
            if node is REPLY:
                break
            if char not in node.children:
                raise ValueError(f"Text {text!r} leaves the format (expected one of {sorted(node.children)!r}).")
            node = node.children[char]
        return node

    def cursor(self) -> FormatCursor:
        return FormatCursor(self)


def hf_token_texts(tokenizer) -> list[str]:
    """The text each id of a transformers tokenizer decodes to on its own (special tokens: empty)."""
    return tokenizer.batch_decode([[i] for i in range(len(tokenizer))], skip_special_tokens=True)


class FormatCursor:
    """One answer's position in the format: a ``decoding.Constraint``."""

    def __init__(self, fmt: TicketFormat) -> None:
        self.fmt, self.node, self.reply_started = fmt, fmt.header, False

    def choose(self, logits: np.ndarray) -> int:
        """The highest-scoring token the format allows here."""
        if self.node is REPLY:
            if self.reply_started:
                return int(np.argmax(logits))  # free text: no mask at all
            allowed = self.fmt.not_eos
        else:
            allowed = self.fmt.allowed(self.node)
        return int(allowed[np.argmax(logits[allowed])])

    def allowed(self, vocab_size: int) -> np.ndarray | None:
        """The tokens ``choose`` picks among, as a mask over ``vocab_size`` logits (``None``: any token)."""
        if self.node is REPLY and self.reply_started:
            return None
        mask = np.zeros(vocab_size, dtype=bool)
        mask[self.fmt.not_eos if self.node is REPLY else self.fmt.allowed(self.node)] = True
        return mask

    def advance(self, token: int) -> None:
        text, i = self.fmt.texts[token], 0
        while self.node is not REPLY and i < len(text):  # the part of the token inside the header
            self.node = self.node.children[text[i]]  # choose() allowed only tokens that fit
            i += 1
        self.reply_started = self.reply_started or (self.node is REPLY and bool(text[i:].strip()))

    @property
    def in_header(self) -> bool:
        return self.node is not REPLY
