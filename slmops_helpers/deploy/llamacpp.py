"""GGUF beside ONNX: the deployed model converted with llama.cpp's own tools, and run by it.

llama.cpp (and Ollama and LM Studio, built on it) is what most people run small models with
on their own machines. Its format is GGUF: one file holding the weights, already quantized
in llama.cpp's block formats, and the tokenizer. The path here is the one llama.cpp
documents:

1. ``convert_hf_to_gguf.py`` (shipped inside llama-cpp-python's source, unpacked at setup:
   ``llamacpp_setup``) turns the Hugging Face folder into an f16 GGUF;
2. ``llama_model_quantize`` (the library behind ``llama-quantize``) makes Q8_0, Q6_K, Q5_K_M,
   Q4_K_M and Q4_0 from it (and, for section 4.3's study, Q5_0 and Q4_1).

Each build is cached per source model and variant, written atomically, and checked before
use (``check_gguf``: a truncated file or one that is not GGUF is refused with the fix).
``LlamaCppLM`` runs a variant through llama.cpp with the same interface as
``runtime.OnnxCausalLM`` and the same tokenizer files, so the benchmark and the server treat
both runtimes alike: same token ids in, greedy tokens out, each one timed.
"""

from __future__ import annotations

import atexit
import ctypes
import math
import os
import shutil
import struct
import subprocess
import sys
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._io import build_directory, is_complete
from ..config import cache_dir
from ..decoding import Constraint, Sampler, StreamedToken, greedy_stream
from ..models import MIB, files_mib
from . import llamacpp_setup
from .export import source_fingerprint
from .llamacpp_setup import availability
from .runtime import FolderTokenizer

GGUF_FILE = "model.gguf"
GGUF_MAGIC = b"GGUF"
GGUF_SIDE_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")  # as the ONNX export has
MARKER = "slmops_gguf.json"  # written last: its presence means the folder is complete
# variant -> llama.cpp's file type (enum llama_ftype), largest first; f16 is the converter's own output.
GGUF_TYPES: dict[str, int | None] = {
    "gguf_f16": None,
    "gguf_q8_0": 7,
    "gguf_q6_k": 18,
    "gguf_q5_k_m": 17,
    "gguf_q4_k_m": 15,
    "gguf_q4_0": 2,
}
NOTES = {  # what each variant is, for a package's lineage and the notebook's table
    "gguf_f16": "llama.cpp f16 (convert_hf_to_gguf.py)",
    "gguf_q8_0": "llama.cpp Q8_0 (8-bit blocks of 32)",
    "gguf_q4_k_m": "llama.cpp Q4_K_M (k-quant mix)",
    "gguf_q6_k": "llama.cpp Q6_K (6-bit k-quant)",
    "gguf_q5_k_m": "llama.cpp Q5_K_M (k-quant mix)",
    "gguf_q4_0": "llama.cpp Q4_0 (4-bit blocks of 32)",
}
# Types only section 4.3's quantization study builds (llama_ftype values, as llama-quantize names them).
STUDY_TYPES: dict[str, int] = {"gguf_q5_0": 8, "gguf_q4_1": 3}
NOTES |= {
    "gguf_q5_0": "llama.cpp Q5_0 (5-bit blocks of 32)",
    "gguf_q4_1": "llama.cpp Q4_1 (4-bit blocks of 32, with an offset)",
}
CONTEXT = 2048  # KV cache llama.cpp allocates up front: the server's longest prompt and answer fit


def check_variant(variant: str) -> str:
    if variant not in GGUF_TYPES | STUDY_TYPES:
        raise ValueError(f"Unknown GGUF variant {variant!r}. Choose one of {sorted(GGUF_TYPES | STUDY_TYPES)}.")
    return variant


@dataclass(frozen=True)
class TensorEntry:
    """One row of a GGUF file's tensor table."""

    name: str
    type_name: str  # llama.cpp's tensor type: F32, F16, Q8_0, Q4_K, ...
    shape: tuple[int, ...]  # innermost (row length) first, as GGUF stores it
    n_bytes: int


# GGUF's value types -> struct formats (8 is a string, 9 an array)
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


def read_tensor_table(path: Path) -> tuple[list[TensorEntry], int]:
    """The tensor table of a GGUF file and the byte where its last tensor ends, read from the
    header alone (milliseconds, where ``gguf.GGUFReader`` maps every field of the vocabulary)."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    with open(path, "rb") as fh:

        def read(fmt: str) -> Any:
            size = struct.calcsize(fmt)
            raw = fh.read(size)
            if len(raw) != size:
                raise ValueError("the header ends early")
            return struct.unpack(f"<{fmt}", raw)[0]

        def text() -> str:
            return fh.read(read("Q")).decode("utf-8", errors="replace")

        def value(kind: int) -> Any:
            if kind == _STRING:
                return text()
            if kind == _ARRAY:
                item, count = read("I"), read("Q")
                if item in _SCALARS:  # fixed-size items: skip them in one seek
                    fh.seek(count * struct.calcsize(_SCALARS[item]), 1)
                    return None
                return [value(item) for _ in range(count)]
            return read(_SCALARS[kind])

        if fh.read(4) != GGUF_MAGIC:
            raise ValueError("no GGUF magic")
        _version, n_tensors, n_fields = read("I"), read("Q"), read("Q")
        alignment = 32
        for _ in range(n_fields):
            key, kind = text(), read("I")
            found = value(kind)
            alignment = found if key == "general.alignment" else alignment
        infos = []
        for _ in range(n_tensors):
            name, dims = text(), read("I")
            shape = tuple(read("Q") for _ in range(dims))
            infos.append((name, shape, read("I"), read("Q")))
        data_start = -(-fh.tell() // alignment) * alignment
    entries, end = [], data_start
    for name, shape, kind, offset in infos:
        quant = GGMLQuantizationType(kind)
        block, block_bytes = GGML_QUANT_SIZES[quant]
        n_bytes = math.prod(shape) // block * block_bytes
        entries.append(TensorEntry(name, quant.name, shape, n_bytes))
        end = max(end, data_start + offset + n_bytes)
    return entries, end


def check_gguf(path: Path) -> Path:
    """Refuse a file that is missing, not GGUF, or shorter than its own tensor table says."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing. Fix: export it with llamacpp.build_gguf.")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != GGUF_MAGIC:
        raise ValueError(f"{path} is not a GGUF file (it starts with {magic!r}). Fix: export it again (build_gguf).")
    try:
        _, end = read_tensor_table(path)
    except (ValueError, KeyError, OSError, struct.error) as err:
        raise ValueError(f"{path} is a damaged GGUF file ({err}). Fix: export it again (build_gguf).") from err
    if end > path.stat().st_size:
        raise ValueError(
            f"{path} is truncated: its tensors need {end} bytes, the file has {path.stat().st_size}. "
            "Fix: export it again (build_gguf)."
        )
    return path


def gguf_dir(source: Path, variant: str, root: Path | None = None) -> Path:
    return (root or cache_dir() / "gguf") / source_fingerprint(source) / check_variant(variant)


def is_built(folder: Path) -> bool:
    return is_complete(folder, MARKER, GGUF_FILE)


def convert_command(source: Path, out: Path) -> list[str]:
    """llama.cpp's converter, as the notebook prints it."""
    script = llamacpp_setup.converter_dir() / "convert_hf_to_gguf.py"
    return [sys.executable, str(script), str(source), "--outfile", str(out), "--outtype", "f16"]


def convert(source: Path, out: Path) -> None:
    """HF folder → f16 GGUF with llama.cpp's converter (it imports its own ``gguf-py``)."""
    converter = llamacpp_setup.converter_dir()
    env = os.environ | {"PYTHONPATH": f"{converter / 'gguf-py'}{os.pathsep}{converter}", "HF_HUB_OFFLINE": "1"}
    log = out.parent / "convert.log"
    with open(log, "w") as fh:
        done = subprocess.run(convert_command(source, out), stdout=fh, stderr=fh, env=env)
    if done.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-5:])
        raise RuntimeError(f"llama.cpp's converter failed (exit {done.returncode}):\n{tail}\nFull log: {log}")


def quantize(f16: Path, out: Path, file_type: int) -> None:
    """One of llama.cpp's quantization types, by its own library call."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype, params.nthread = file_type, os.cpu_count() or 1
    if llama_cpp.llama_model_quantize(str(f16).encode(), str(out).encode(), ctypes.byref(params)) != 0:
        raise RuntimeError(f"llama.cpp could not quantize {f16} to file type {file_type}.")


def build_gguf(source: Path, variant: str, root: Path | None = None, force: bool = False) -> Path:
    """Export ``variant`` of the model folder ``source`` (cached); return its folder."""
    from transformers import AutoTokenizer

    usable, reason = availability()
    if not usable:
        raise RuntimeError(reason)
    file_type = (GGUF_TYPES | STUDY_TYPES)[check_variant(variant)]
    source, folder = Path(source), gguf_dir(Path(source), variant, root)
    if is_built(folder) and not force:
        return folder
    f16 = None if file_type is None else build_gguf(source, "gguf_f16", root) / GGUF_FILE
    with build_directory(folder, MARKER, {"source": str(source), "variant": variant}) as tmp:
        if f16 is None:
            convert(source, tmp / GGUF_FILE)
        else:
            quantize(f16, tmp / GGUF_FILE, file_type)
        check_gguf(tmp / GGUF_FILE)
        # The same tokenizer files the ONNX export carries, so both runtimes see the same token ids.
        AutoTokenizer.from_pretrained(source).save_pretrained(tmp / "tokenizer")
        for name in GGUF_SIDE_FILES:
            os.replace(tmp / "tokenizer" / name, tmp / name)
        shutil.rmtree(tmp / "tokenizer")
    return folder


def build_all(source: Path, root: Path | None = None) -> dict[str, Path]:
    """Every GGUF variant of ``source``: ``{variant: folder}``."""
    from tqdm.auto import tqdm

    return {variant: build_gguf(source, variant, root) for variant in tqdm(GGUF_TYPES, desc="GGUF", unit="variant")}


def gguf_mib(folder: Path) -> float:
    return files_mib(folder, "*.gguf")


def tensor_types(folder: Path) -> dict[str, float]:
    """MiB of the file stored in each of llama.cpp's tensor types, largest first: a quantization
    type names a target, and the quantizer falls back where a tensor's shape does not fit it."""
    stored: dict[str, float] = {}
    for tensor in read_tensor_table(Path(folder) / GGUF_FILE)[0]:
        stored[tensor.type_name] = stored.get(tensor.type_name, 0.0) + tensor.n_bytes / MIB
    return dict(sorted(stored.items(), key=lambda item: -item[1]))


def describe(gguf_dirs: dict[str, Path]) -> list[dict[str, object]]:
    """Each variant's size and what its bytes are stored as (notebook 04's GGUF table)."""
    return [{"variant": v, "size_mib": gguf_mib(d), "types": tensor_types(d)} for v, d in gguf_dirs.items()]


def _close_at_exit(llm: weakref.ReferenceType) -> None:
    if (alive := llm()) is not None:
        alive.close()


class LlamaCppLM(FolderTokenizer):
    """A GGUF variant run by llama.cpp, greedy and streamed, with the course's tokenizer files.

    One generation at a time: each ``stream`` starts from an empty KV cache.
    """

    def __init__(self, folder: str | Path, threads: int | None = None, context: int = CONTEXT) -> None:
        import llama_cpp

        self.folder = Path(folder)
        path = check_gguf(self.folder / GGUF_FILE)
        threads = threads or os.cpu_count() or 1  # llama-cpp-python's own default is half the cores
        self.llm = llama_cpp.Llama(
            model_path=str(path), n_ctx=context, n_threads=threads, n_threads_batch=threads, verbose=False
        )
        # Close before the interpreter tears down llama_cpp's globals: its own __del__ then fails loudly.
        atexit.register(_close_at_exit, weakref.ref(self.llm))
        self.context_length, self.n_vocab = self.llm.n_ctx(), self.llm.n_vocab()
        self.eos_ids = {self.llm.token_eos()}
        self._last_logits = llama_cpp.llama_get_logits_ith
        self.load_tokenizer(self.folder)

    def _step(self, new: list[int]) -> np.ndarray:
        self.llm.eval(new)
        last = self._last_logits(self.llm.ctx, -1)
        return np.ctypeslib.as_array(last, shape=(self.n_vocab,)).copy()

    def logits(self, ids: list[int], first: int = 0) -> np.ndarray:
        """Logits at positions ``first`` .. ``len(ids) - 1`` of ``ids``, teacher-forced (as the
        other runtimes' ``logits(ids)[first:]``): the prefix in one batch, then a token at a time,
        since this context keeps only the last position's logits."""
        self.check_length(len(ids), 0)
        self.llm.reset()
        if first:
            self.llm.eval(ids[:first])
        return np.stack([self._step([token]) for token in ids[first:]])

    def stream(
        self,
        ids: list[int],
        max_new_tokens: int,
        stop_at_eos: bool = True,
        constraint: Constraint | None = None,
        sampler: Sampler | None = None,
    ) -> Iterator[StreamedToken]:
        """Greedy decoding of prompt ``ids`` (sampled with a ``sampler``) through the loop every
        runtime of the course shares."""
        self.check_length(len(ids), max_new_tokens)
        self.llm.reset()  # the next eval starts at position 0 and drops the old cache
        eos = self.eos_ids if stop_at_eos else set()
        return greedy_stream(self._step, ids, max_new_tokens, eos, self.decode, constraint, sampler)
