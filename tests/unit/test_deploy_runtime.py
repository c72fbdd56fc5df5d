"""The onnxruntime decoder loop on a tiny exported Llama: same logits and greedy tokens
as PyTorch, the same chat prompts as transformers, and clear errors for prompts that do
not fit."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from slmops_helpers.decoding import StreamedToken, greedy_stream
from slmops_helpers.deploy.runtime import OnnxCausalLM, render_chat, special_tokens

PROMPTS = ["the hub is offline", "my wifi app is not setup , help", "error code : billing"]


def _chat(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_reads_the_shape_from_genai_config(onnx_lm):
    assert (onnx_lm.n_layers, onnx_lm.kv_heads, onnx_lm.head_size) == (2, 2, 16)
    assert onnx_lm.context_length == 128
    assert onnx_lm.eos_ids == {2}  # <|end|>
    assert onnx_lm.kv_dtype == np.float32


@pytest.mark.parametrize("text", PROMPTS)
def test_logits_match_pytorch(onnx_lm, torch_lm, text):
    prompt = torch_lm.chat_prompt(_chat(text))
    assert onnx_lm.chat_prompt(_chat(text)) == prompt
    ids = torch_lm.encode(prompt)
    assert onnx_lm.encode(prompt) == ids
    ours, reference = onnx_lm.logits(ids), torch_lm.logits(ids)
    assert ours.shape == reference.shape == (len(ids), 27)
    assert np.abs(ours - reference).max() < 1e-3  # the parity target notebook 04 reports


@pytest.mark.parametrize("stop_at_eos", [True, False])
def test_stream_matches_pytorch_greedy_tokens(onnx_lm, torch_lm, stop_at_eos):
    for text in PROMPTS:
        ids = torch_lm.encode(torch_lm.chat_prompt(_chat(text)))
        ours = list(onnx_lm.stream(ids, 24, stop_at_eos=stop_at_eos))
        reference = list(torch_lm.stream(ids, 24, stop_at_eos=stop_at_eos))
        assert [t.id for t in ours] == [t.id for t in reference]
        assert len(set(t.id for t in ours)) > 1  # varied output, so the comparison means something
        if not stop_at_eos:
            assert len(ours) == 24
        assert all(isinstance(t, StreamedToken) and t.seconds > 0 for t in ours)
        # the streamed pieces join into the decoded answer
        assert "".join(t.text for t in ours) == onnx_lm.decode([t.id for t in ours])


def test_cached_decoding_matches_a_full_forward_pass(onnx_lm):
    ids = onnx_lm.encode("the hub is offline")
    greedy = [t.id for t in onnx_lm.stream(ids, 8, stop_at_eos=False)]
    full = onnx_lm.logits(ids + greedy)
    assert list(np.argmax(full[len(ids) - 1 : -1], axis=-1)) == greedy


def test_generate_is_the_joined_stream(onnx_lm):
    prompt = onnx_lm.chat_prompt(_chat("the hub is offline"))
    pieces = [t.text for t in onnx_lm.stream(onnx_lm.encode(prompt), 10)]
    assert onnx_lm.generate(prompt, 10) == "".join(pieces)


TEMPLATES = {
    "tiny": None,  # the tiny tokenizer's own template (tests/conftest.py)
    "chatml_default_system": (
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
        "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
    # block tags on their own, indented lines: only equal with trim_blocks + lstrip_blocks
    "indented_blocks": (
        "{% for m in messages %}\n"
        "    {% if m.role == 'system' %}\n"
        "[SYS] {{ m.content }}\n"
        "    {% else %}\n"
        "[{{ m.role | upper }}] {{ m.content | trim }}\n"
        "    {% endif %}\n"
        "{% endfor %}\n"
        "{% if add_generation_prompt %}[ASSISTANT]{% endif %}"
    ),
    "loop_controls": (
        "{%- for m in messages -%}{% if m.content == 'STOP' %}{% break %}{% endif %}"
        "{% if m.role == 'system' %}{% continue %}{% endif %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>"
        "{%- endfor -%}{% if add_generation_prompt %}<assistant>{% endif %}"
    ),
}
CONVERSATIONS = [
    [{"role": "user", "content": "the hub is offline"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "  wifi  "}],
    [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "reply : none"},
        {"role": "user", "content": "STOP"},
        {"role": "user", "content": "after the stop"},
    ],
]


@pytest.mark.parametrize("name", sorted(TEMPLATES))
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_render_chat_equals_apply_chat_template(tiny_tokenizer, name, add_generation_prompt):
    template = TEMPLATES[name] or tiny_tokenizer.chat_template
    for messages in CONVERSATIONS:
        expected = tiny_tokenizer.apply_chat_template(
            messages, chat_template=template, tokenize=False, add_generation_prompt=add_generation_prompt
        )
        assert render_chat(template, messages, add_generation_prompt) == expected


def test_render_chat_raise_exception_becomes_a_value_error():
    template = "{% if messages[0]['role'] == 'assistant' %}{{ raise_exception('start with a user turn') }}{% endif %}"
    with pytest.raises(ValueError, match="start with a user turn"):
        render_chat(template, [{"role": "assistant", "content": "hi"}])


def test_render_chat_is_sandboxed():
    with pytest.raises(Exception, match="unsafe|not safely callable|access to attribute"):
        render_chat("{{ messages.__class__.__mro__ }}", [])


def test_too_long_prompt_names_the_fix(onnx_lm):
    with pytest.raises(ValueError, match=r"120 tokens \+ 16 new tokens exceeds .* context of 128\. Fix: shorten"):
        onnx_lm.stream([3] * 120, 16)
    with pytest.raises(ValueError, match="context of 128"):
        onnx_lm.logits([3] * 129)
    onnx_lm.check_length(112, 16)  # exactly the context: fine
    with pytest.raises(ValueError, match="prompt is empty"):
        onnx_lm.stream([], 4)


def test_max_new_tokens_below_one_is_refused(onnx_lm):
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1, got 0"):
        list(onnx_lm.stream([3, 4], 0))
    with pytest.raises(ValueError, match="got -3"):
        list(greedy_stream(lambda new: np.zeros(4), [1], -3, set(), str))


def _scripted_step(tokens: list[int], vocab: int = 8):
    """A fake model that answers ``tokens`` in order, recording what it was fed."""
    fed = []

    def step(new: list[int]) -> np.ndarray:
        fed.append(list(new))
        logits = np.zeros(vocab)
        logits[tokens[len(fed) - 1]] = 1.0
        return logits

    return step, fed


def test_greedy_stream_stops_at_eos_and_feeds_one_token_at_a_time():
    step, fed = _scripted_step([5, 6, 7, 1, 4])
    out = list(greedy_stream(step, [3, 3], 10, {1}, lambda ids: " ".join(map(str, ids))))
    assert [t.id for t in out] == [5, 6, 7]
    assert [t.text for t in out] == ["5", " 6", " 7"]
    assert fed == [[3, 3], [5], [6], [7]]  # prompt first, then each new token; eos is not fed back


def test_greedy_stream_ignores_eos_when_told_and_respects_the_budget():
    step, _ = _scripted_step([5, 1, 4, 1, 2])
    assert [t.id for t in greedy_stream(step, [3], 4, set(), str)] == [5, 1, 4, 1]


def test_greedy_stream_joins_multi_token_characters():
    # a decoder that only completes a character once both halves are there
    step, _ = _scripted_step([1, 2, 3])
    decode = {(1,): "", (1, 2): "é", (1, 2, 3): "éa"}
    out = list(greedy_stream(step, [0], 3, set(), lambda ids: decode[tuple(ids)]))
    assert [t.text for t in out] == ["", "é", "a"]


def test_missing_genai_config_and_chat_template_name_the_fix(tiny_onnx, tmp_path):
    with pytest.raises(FileNotFoundError, match="build_variant"):
        OnnxCausalLM(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(tiny_onnx, copy)
    (copy / "chat_template.jinja").unlink()
    lm = OnnxCausalLM(copy)
    with pytest.raises(FileNotFoundError, match="chat_template.jinja.*export the folder again"):
        lm.chat_prompt(_chat("hi"))


# Llama 3 and Phi templates print special tokens; transformers passes them by name
SPECIAL_TEMPLATE = "{% for m in messages %}{{ m.role }}: {{ m.content }}{{ eos_token }}{% endfor %}{{ pad_token }}"


def test_chat_prompt_passes_special_tokens_like_transformers(tiny_onnx, tiny_tokenizer, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_onnx, copy)
    (copy / "chat_template.jinja").write_text(SPECIAL_TEMPLATE)
    expected = tiny_tokenizer.apply_chat_template(
        _chat("the hub is offline"), chat_template=SPECIAL_TEMPLATE, tokenize=False, add_generation_prompt=True
    )
    assert expected == "user: the hub is offline<|end|><pad>"
    assert OnnxCausalLM(copy).chat_prompt(_chat("the hub is offline")) == expected


def test_special_tokens_reads_strings_and_added_token_dicts(tmp_path):
    assert special_tokens(tmp_path) == {}  # no tokenizer config: nothing to pass
    config = {"bos_token": {"content": "<s>", "lstrip": False}, "eos_token": "</s>", "model_max_length": 8}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    assert special_tokens(tmp_path) == {"bos_token": "<s>", "eos_token": "</s>"}


class _Perturbed:
    """A runtime whose logits are another's plus a perturbation (a broken export)."""

    def __init__(self, inner, change):
        self.inner, self.change = inner, change

    def encode(self, prompt):
        return self.inner.encode(prompt)

    def logits(self, ids):
        return self.change(self.inner.logits(ids).copy())


def test_logit_parity_holds_for_the_export(onnx_lm, torch_lm):
    from slmops_helpers.deploy.bench import logit_parity
    from slmops_helpers.models import NOISE_FACTOR

    prompts = [torch_lm.chat_prompt(_chat(t)) for t in PROMPTS]
    parity = logit_parity(torch_lm, onnx_lm, prompts, new_tokens=8)
    assert parity.ok and parity.flips == 0 and parity.positions > 3 * 8
    greedy = tuple(tuple(t.id for t in torch_lm.stream(torch_lm.encode(p), 8)) for p in prompts)
    assert parity.reference_answers == greedy  # the answers it scored, for agreement without decoding again
    assert 0 < parity.noise and parity.bound == NOISE_FACTOR * max(parity.noise, 2.0**-23 * parity.logit_scale)


def _swap_top_two_at_position_3(logits):
    row = logits[3]
    first, second = np.argsort(row)[-2:][::-1]
    row[first], row[second] = row[second], row[first] - 1.0  # a clear, untied change of the choice
    return logits


@pytest.mark.parametrize(
    "change, fails_on",
    [
        (lambda x: x + np.linspace(0, 1e-2, x.shape[1], dtype=np.float32), "max_abs_diff"),
        (_swap_top_two_at_position_3, "flips"),
    ],
)
def test_logit_parity_fails_a_broken_export(onnx_lm, torch_lm, change, fails_on):
    from slmops_helpers.deploy.bench import logit_parity

    prompts = [torch_lm.chat_prompt(_chat(PROMPTS[0]))]
    parity = logit_parity(torch_lm, _Perturbed(onnx_lm, change), prompts, new_tokens=8)
    assert not parity.ok
    assert parity.flips >= 1 if fails_on == "flips" else parity.max_abs_diff > parity.bound


def test_logit_parity_refuses_different_tokenizers(onnx_lm, torch_lm):
    from slmops_helpers.deploy.bench import logit_parity

    other = _Perturbed(onnx_lm, lambda x: x)
    other.encode = lambda prompt: [1, 2, 3]
    with pytest.raises(ValueError, match="tokenize"):
        logit_parity(torch_lm, other, [torch_lm.chat_prompt(_chat(PROMPTS[0]))], new_tokens=2)
