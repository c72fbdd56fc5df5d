"""Greedy, streaming generation with plain onnxruntime: what runs on the device.

The ONNX decoder made by onnxruntime-genai's builder takes ``input_ids``, an
``attention_mask`` over the whole sequence so far, and one key and one value tensor per
layer (the KV cache, shape ``(batch, kv_heads, past_len, head_size)``); it returns the
logits and the grown cache. ``OnnxCausalLM`` drives that loop one token at a time, so it
can stream tokens and time each one. It needs only onnxruntime, numpy, ``tokenizers``
and jinja2: no torch, so a deployed process stays small.

>>> lm = OnnxCausalLM("artifacts/04_deployment/variants/onnx_int4")   # doctest: +SKIP
>>> lm.generate(lm.chat_prompt([{"role": "user", "content": "Hi"}]), max_new_tokens=16)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..decoding import Constraint, Sampler, StreamedToken, TorchDecoder, decoder_stream
from ..decoding.constrained import hf_token_texts

GENAI_CONFIG = "genai_config.json"


def render_chat(template: str, messages: list[dict[str, str]], add_generation_prompt: bool = True, **extra) -> str:
    """Render a Hugging Face chat template the way ``tokenizer.apply_chat_template`` does.

    Same jinja settings as transformers (sandboxed, ``trim_blocks``, ``lstrip_blocks``,
    loop controls, ``raise_exception``), so the ONNX runtime sees exactly the prompt
    PyTorch saw.
    """
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise ValueError(f"Chat template refused the messages: {message}")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt, **extra)


def special_tokens(folder: str | Path) -> dict[str, str]:
    """``bos_token``, ``eos_token``, … from a folder's ``tokenizer_config.json``: the names
    transformers hands every chat template (Llama 3's and Phi's print ``bos_token``).
    Empty when the folder has no tokenizer config."""
    path = Path(folder) / "tokenizer_config.json"
    if not path.is_file():
        return {}
    config = json.loads(path.read_text(encoding="utf-8"))
    tokens = {}
    for key, value in config.items():
        content = value.get("content") if isinstance(value, dict) else value  # older files store AddedToken dicts
        if key.endswith("_token") and isinstance(content, str):
            tokens[key] = content
    return tokens


def eos_ids(config: dict[str, Any]) -> set[int]:
    """The end-of-answer token ids of a ``genai_config.json`` model section (one id or a list)."""
    eos = config["eos_token_id"]
    return set(eos if isinstance(eos, list) else [eos])


def read_genai_config(folder: Path) -> dict[str, Any]:
    path = Path(folder) / GENAI_CONFIG
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: {folder} is not an exported model folder. "
            "Fix: export it with slmops_helpers.deploy.export.build_variant."
        )
    return json.loads(path.read_text())["model"]


class FolderTokenizer:
    """Prompts and tokens from a model folder's ``tokenizer.json`` and chat template: what every
    runtime that does not bring torch (ONNX, onnxruntime-genai, llama.cpp) shares, so all of
    them see the same token ids for the same prompt."""

    folder: Path
    context_length: int  # tokens the runtime holds: prompt and answer together

    def load_tokenizer(self, folder: Path) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        template = folder / "chat_template.jinja"
        self.chat_template = template.read_text() if template.is_file() else None
        self.special_tokens = special_tokens(folder)

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        """The model's own chat template applied to ``messages``, ready for ``encode``."""
        if self.chat_template is None:
            raise FileNotFoundError(f"{self.folder} has no chat_template.jinja. Fix: export the folder again.")
        return render_chat(self.chat_template, messages, **self.special_tokens)

    def encode(self, prompt: str) -> list[int]:
        return self.tokenizer.encode(prompt, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def vocab(self) -> dict[str, int]:
        """Token string -> id, special tokens included: two models can share a draft only if equal."""
        return self.tokenizer.get_vocab(with_added_tokens=True)

    def token_texts(self) -> list[str]:
        """The text each token id decodes to on its own (special tokens: empty)."""
        size = self.tokenizer.get_vocab_size(with_added_tokens=True)
        return self.tokenizer.decode_batch([[i] for i in range(size)], skip_special_tokens=True)

    def stream(self, ids: list[int], max_new_tokens: int, stop_at_eos: bool = True) -> Iterator[StreamedToken]:
        raise NotImplementedError  # each runtime decodes in its own way

    def generate(self, prompt: str, max_new_tokens: int) -> str:
        """The whole greedy answer to ``prompt`` (a string already in chat format)."""
        return "".join(t.text for t in self.stream(self.encode(prompt), max_new_tokens))

    def check_length(self, n_prompt: int, max_new_tokens: int) -> None:
        if n_prompt < 1:
            raise ValueError("The prompt is empty: pass at least one token.")
        if n_prompt + max_new_tokens > self.context_length:
            raise ValueError(
                f"Prompt of {n_prompt} tokens + {max_new_tokens} new tokens exceeds the model's context of "
                f"{self.context_length}. Fix: shorten the prompt or lower max_new_tokens."
            )


class OnnxCausalLM(FolderTokenizer):
    """An exported decoder plus its tokenizer and chat template, run on the CPU."""

    def __init__(self, folder: str | Path, threads: int | None = None, spin: bool = True) -> None:
        import onnxruntime as ort

        self.folder = Path(folder)
        config = read_genai_config(self.folder)
        decoder = config["decoder"]
        self.n_layers, self.kv_heads = decoder["num_hidden_layers"], decoder["num_key_value_heads"]
        self.head_size = decoder["head_size"]
        self.context_length, self.eos_ids = config["context_length"], eos_ids(config)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        if not spin:  # idle threads sleep instead of spinning: two sessions taking turns (a draft and
            # its target) would otherwise each burn the cores the other needs
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            str(self.folder / decoder["filename"]), options, providers=["CPUExecutionProvider"]
        )
        past_type = next(i.type for i in self.session.get_inputs() if i.name.startswith("past_key_values"))
        self.kv_dtype = np.float16 if "float16" in past_type else np.float32
        self.load_tokenizer(self.folder)

    # --- forward passes -----------------------------------------------------------------

    def _empty_cache(self) -> dict[str, np.ndarray]:
        shape = (1, self.kv_heads, 0, self.head_size)
        return {
            f"past_key_values.{i}.{kind}": np.zeros(shape, dtype=self.kv_dtype)
            for i in range(self.n_layers)
            for kind in ("key", "value")
        }

    def _forward(self, ids: list[int], cache: dict[str, np.ndarray], total: int) -> tuple[np.ndarray, dict]:
        """Run new tokens ``ids`` after ``cache``; return logits (len(ids), vocab) and the new cache."""
        feeds = {
            "input_ids": np.array([ids], dtype=np.int64),
            "attention_mask": np.ones((1, total), dtype=np.int64),
            **cache,
        }
        outputs = self.session.run(None, feeds)
        names = [o.name for o in self.session.get_outputs()]
        present = {
            name.replace("present", "past_key_values"): value
            for name, value in zip(names, outputs, strict=True)
            if name.startswith("present")
        }
        return outputs[names.index("logits")][0], present

    def logits(self, ids: list[int]) -> np.ndarray:
        """Logits for every position of ``ids`` in one pass, as float32 (for parity checks)."""
        self.check_length(len(ids), 0)
        return self._forward(ids, self._empty_cache(), len(ids))[0].astype(np.float32)

    def decoder(self) -> OnnxDecoder:
        """A fresh ``decoding.Decoder`` over this model (its own, empty KV cache)."""
        return OnnxDecoder(self)

    def stream(
        self,
        ids: list[int],
        max_new_tokens: int,
        stop_at_eos: bool = True,
        constraint: Constraint | None = None,
        sampler: Sampler | None = None,
    ) -> Iterator[StreamedToken]:
        """Greedy decoding of prompt ``ids`` (sampled with a ``sampler``), yielding each token as
        soon as it exists; ``constraint`` keeps the answer inside a format (``constrained.TicketFormat``)."""
        self.check_length(len(ids), max_new_tokens)
        eos = self.eos_ids if stop_at_eos else set()
        return decoder_stream(self.decoder(), ids, max_new_tokens, eos, self.decode, constraint, sampler)


class GenaiLM(FolderTokenizer):
    """onnxruntime-genai's own generator over an exported folder (the loop Foundry Local runs),
    timed token by token exactly like ``OnnxCausalLM``: the first token's time includes the
    prompt pass, each later one is one step of the generator."""

    def __init__(self, folder: str | Path) -> None:
        import onnxruntime_genai as og

        self.folder = Path(folder)
        config = read_genai_config(self.folder)
        self.context_length, self.eos_ids = config["context_length"], eos_ids(config)
        self.model = og.Model(str(self.folder))
        self.load_tokenizer(self.folder)

    def stream(self, ids: list[int], max_new_tokens: int, stop_at_eos: bool = True) -> Iterator[StreamedToken]:
        import onnxruntime_genai as og

        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}.")
        params = og.GeneratorParams(self.model)
        total = len(ids) + max_new_tokens
        # Without a stop at EOS the speed runs must do the same work as ours: min_length masks EOS.
        params.set_search_options(max_length=total, min_length=0 if stop_at_eos else total, do_sample=False)
        generator, generated, text = og.Generator(self.model, params), [], ""
        start = time.perf_counter()
        generator.append_tokens(ids)  # the prompt pass: part of the first token's time
        while not generator.is_done() and len(generated) < max_new_tokens:
            generator.generate_next_token()
            token, seconds = int(generator.get_next_tokens()[0]), time.perf_counter() - start
            if stop_at_eos and token in self.eos_ids:
                return
            generated.append(token)
            full = self.decode(generated)
            yield StreamedToken(token, full[len(text) :], seconds)
            text, start = full, time.perf_counter()


class OnnxDecoder:
    """A ``decoding.Decoder`` over an ``OnnxCausalLM``: the KV cache as numpy arrays, so
    cutting it back is a slice along the sequence axis."""

    def __init__(self, lm: OnnxCausalLM) -> None:
        self.lm, self.cache, self.length = lm, lm._empty_cache(), 0

    def feed(self, ids: list[int]) -> np.ndarray:
        logits, self.cache = self.lm._forward(ids, self.cache, self.length + len(ids))
        self.length += len(ids)
        return logits

    def crop(self, length: int) -> None:
        if not 0 <= length <= self.length:
            raise ValueError(f"Cannot crop a cache of {self.length} tokens to {length}.")
        self.cache = {name: value[:, :, :length] for name, value in self.cache.items()}
        self.length = length


class TorchCausalLM:
    """The same interface over a PyTorch model (torch eager), for side-by-side benchmarks."""

    def __init__(self, folder: str | Path, device: str = "cpu") -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.folder, self.device = Path(folder), device
        self.hf_tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(device).eval()
        self.eos_ids = {self.hf_tokenizer.eos_token_id}
        self.context_length = self.model.config.max_position_embeddings

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        return self.hf_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def encode(self, prompt: str) -> list[int]:
        return self.hf_tokenizer(prompt, add_special_tokens=False).input_ids

    def decode(self, ids: list[int]) -> str:
        return self.hf_tokenizer.decode(ids, skip_special_tokens=True)

    def logits(self, ids: list[int]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model(torch.tensor([ids], device=self.device)).logits[0].float().cpu().numpy()

    def vocab(self) -> dict[str, int]:
        return self.hf_tokenizer.get_vocab()

    def token_texts(self) -> list[str]:
        return hf_token_texts(self.hf_tokenizer)

    def decoder(self) -> TorchDecoder:
        return TorchDecoder(self.model, self.device)

    def stream(
        self, ids: list[int], max_new_tokens: int, stop_at_eos: bool = True, constraint: Constraint | None = None
    ) -> Iterator[StreamedToken]:
        eos = self.eos_ids if stop_at_eos else set()
        return decoder_stream(self.decoder(), ids, max_new_tokens, eos, self.decode, constraint)
