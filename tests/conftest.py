"""Shared fixtures: a tiny random Llama and a word-level tokenizer, built in memory.

Unit tests use these instead of the real model wherever the real weights are not the
point, so they run in seconds and need no prepared cache.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = "the hub is offline error code reply category none billing setup wifi app help my your it not".split()
    specials = ["<unk>", "<pad>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>", ":", ",", "."]
    vocab = {w: i for i, w in enumerate(specials + words)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", eos_token="<|end|>")
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build_tiny_llama(tokenizer, **overrides):
    """``models.random_llama`` sized to ``tokenizer`` (its pad and end ids); ``overrides`` change its config."""
    from slmops_helpers.models import random_llama

    ids = {"pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
    return random_llama(len(tokenizer), **(ids | overrides))


@pytest.fixture(scope="session")
def tiny_llama_factory():
    """``build_tiny_llama`` for fixtures in other conftest files."""
    return build_tiny_llama


@pytest.fixture
def tiny_model(tiny_tokenizer):
    return build_tiny_llama(tiny_tokenizer)


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT
