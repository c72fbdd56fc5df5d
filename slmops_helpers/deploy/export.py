"""PyTorch folder → ONNX decoder with a KV cache, in fp32, fp16, int8 and int4.

fp32, fp16 and int4 come from onnxruntime-genai's model builder (the tool behind the
module's one-command Olive conversion), run on a local Hugging Face folder, offline.
int8 comes from onnxruntime's own quantizer (``quantize_dynamic``) applied to the fp32
export, with a list of MatMul nodes left in fp32: which nodes must stay is measured in
the notebook, not guessed. Every build is cached per source model and recipe, and
written atomically (a crash leaves no half-written folder).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._io import build_directory, is_complete
from ..config import artifacts_dir, cache_dir
from ..models import DEFAULT_MODEL, MIB, files_mib, is_prepared, prepare_model, sha256_file

ONNX_FILE = "model.onnx"
MARKER = "slmops_export.json"  # written last: its presence means the folder is complete
SIDE_FILES = ("genai_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


# The model builder's --extra_options a course recipe may set (weight-only quantization's levers).
BUILDER_OPTIONS = (
    "accuracy_level",
    "algo_config",
    "block_size",
    "is_symmetric",
    "matmul_mixed_precision",
    "nodes_to_exclude",
    "op_types_to_quantize",
    "shared_embeddings",
)
BLOCK_SIZES = ("16", "32", "64", "128", "256")


@dataclass(frozen=True)
class Recipe:
    """How to make one variant: a builder run, or int8 quantization of the fp32 export."""

    precision: str  # fp32 | fp16 | int8 | int4
    tool: str = "builder"  # builder | quantize_dynamic
    execution_provider: str = "cpu"
    builder_options: dict[str, str] = field(default_factory=dict)  # --extra_options KEY=VALUE
    exclude: tuple[str, ...] = ()  # quantize_dynamic: MatMul nodes kept in fp32
    per_channel: bool = False  # quantize_dynamic: one weight scale per output channel, not per tensor
    tie_embedding: bool = False  # builder int8: the embedding reads the 8-bit head's weights (see tie_embedding)
    note: str = ""

    def __post_init__(self) -> None:
        if unknown := sorted(set(self.builder_options) - set(BUILDER_OPTIONS)):
            raise ValueError(
                f"Unknown model-builder option(s) {unknown}. Use one of {sorted(BUILDER_OPTIONS)} "
                "(python -m onnxruntime_genai.models.builder --help lists them under --extra_options)."
            )
        block = self.builder_options.get("block_size", "32")
        if block not in BLOCK_SIZES:
            raise ValueError(
                f"block_size={block!r}: MatMulNBits takes blocks of {', '.join(BLOCK_SIZES)} weights along a row. "
                "Fix: pick one of those (smaller blocks: more scales, closer rounding)."
            )
        if self.per_channel and self.tool != "quantize_dynamic":
            raise ValueError("per_channel is a quantize_dynamic option. Fix: set tool='quantize_dynamic' or drop it.")
        if self.tie_embedding and (self.tool, self.precision) != ("builder", "int8"):
            raise ValueError(
                "tie_embedding applies to the builder's int8 export. Fix: precision='int8', tool='builder'."
            )

    def key(self) -> str:
        fields: list[Any] = [self.precision, self.tool, self.execution_provider]
        fields += [sorted(self.builder_options.items()), self.exclude]
        # options added later join the key only when set, so the earlier builds keep their cache folders
        fields += [name for name in ("per_channel", "tie_embedding") if getattr(self, name)]
        return hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:10]


LM_HEAD = "/lm_head/MatMul"
# The variants the course deploys. Each int recipe won a measured comparison in notebook 04.
RECIPES: dict[str, Recipe] = {
    "onnx_fp32": Recipe("fp32", note="reference export"),
    # The builder only writes fp16 graphs for GPU providers; onnxruntime's CPU provider
    # still runs them (measured), which is enough to compare size and quality here.
    "onnx_fp16": Recipe("fp16", execution_provider="cuda", note="GPU-oriented graph, run on CPU"),
    "onnx_int8": Recipe(
        "int8", tie_embedding=True, note="MatMulNBits 8-bit in blocks of 32, embedding tied to the 8-bit head"
    ),
    "onnx_int4": Recipe(
        "int4", builder_options={"algo_config": "k_quant_last"}, note="MatMulNBits 4-bit (k-quant), lm_head int8"
    ),
}
PRECISIONS = ("fp32", "fp16", "int8", "int4")


def get_variant(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"Unknown variant {name!r}. Choose one of {sorted(RECIPES)}.")
    return RECIPES[name]


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"Unsupported precision {precision!r}. Use one of {list(PRECISIONS)}.")
    return precision


# --- where builds live ------------------------------------------------------------------


_FINGERPRINTS: dict[tuple[str, tuple[tuple[str, int, int], ...]], str] = {}  # (folder, file stamps) -> hash


def source_fingerprint(source: Path) -> str:
    """Short hash of a model folder's config and weights: a new model means new exports."""

    source = Path(source)
    if not source.is_dir():
        raise FileNotFoundError(
            f"No model folder at {source}: it does not exist. "
            "Fix: pass a folder written by save_pretrained (e.g. notebook 03's artifacts/03_fine_tuning/merged_lora)."
        )
    weights = sorted(source.glob("*.safetensors"))
    if not (source / "config.json").is_file() or not weights:
        raise FileNotFoundError(
            f"{source} is not a saved model (config.json and *.safetensors expected). "
            "Fix: pass the folder written by save_pretrained (e.g. notebook 03's merged model)."
        )
    # Every export and GGUF lookup asks for it; hash the weights once per version of the files.
    stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in [source / "config.json", *weights])
    key = (str(source.resolve()), stamp)
    if key not in _FINGERPRINTS:
        digest = hashlib.sha256((source / "config.json").read_bytes())
        for path in weights:
            digest.update(sha256_file(path).encode())
        _FINGERPRINTS[key] = digest.hexdigest()[:12]
    return _FINGERPRINTS[key]


def variant_dir(source: Path, recipe: Recipe, root: Path | None = None) -> Path:
    root = root or cache_dir() / "onnx"
    return root / source_fingerprint(source) / f"{recipe.precision}-{recipe.tool}-{recipe.key()}"


def is_built(folder: Path) -> bool:
    return is_complete(folder, MARKER, ONNX_FILE)


UNTUNED = "the untuned base model"
MERGED = "notebook 03's merged LoRA model"
TUNED = "the course's tuned model (notebook 03's recipe, trained at setup)"


@dataclass(frozen=True)
class Candidate:
    """A model folder that could be deployed, and which one it is in words."""

    label: str
    source: Path


def deploy_candidates(
    explicit: str | Path | None = None, model_name: str = DEFAULT_MODEL, output_dir: str | Path | None = None
) -> list[Candidate]:
    """The models that could be deployed, in this order: an explicit folder, or else notebook
    03's merged LoRA model (when it has run) and the course's tuned model (``slmops prepare
    --tuned``); the untuned base last, always (it is the floor a deployment must beat).

    The one list every caller uses: section 4 scores them all (``choose``), section 5
    recognises which one a package came from (``pipeline.stages.find_production``).
    """
    from ..finetune import tuned_dir  # torch and peft: only this lookup needs them, not every export user

    found = []
    if explicit:
        found.append(Candidate(f"the model folder {explicit}", Path(explicit)))
    else:
        merged = artifacts_dir(output_dir) / "03_fine_tuning" / "merged_lora"
        if (merged / "config.json").is_file():
            found.append(Candidate(MERGED, merged))
        if is_prepared(tuned_dir(model_name)):
            found.append(Candidate(TUNED, tuned_dir(model_name)))
    return [*found, Candidate(UNTUNED, Path(prepare_model(model_name)))]


def deploy_source(explicit: str | Path | None = None) -> tuple[Path, str]:
    """The first of ``deploy_candidates`` and its label, for commands that export without
    scoring (``slmops bench``); section 4 itself deploys the best candidate by score."""
    first = deploy_candidates(explicit)[0]
    return first.source, first.label


# --- building -----------------------------------------------------------------------------


def builder_command(source: Path, out: Path, recipe: Recipe, hf_cache: Path) -> list[str]:
    """The onnxruntime-genai model-builder command line for ``recipe`` (printed in the notebook)."""
    command = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(source), "-o", str(out)]
    command += ["-p", recipe.precision, "-e", recipe.execution_provider, "-c", str(hf_cache)]
    if recipe.builder_options:
        command += ["--extra_options", *(f"{k}={v}" for k, v in recipe.builder_options.items())]
    return command


def _run_builder(source: Path, out: Path, recipe: Recipe) -> None:
    log = out / "builder.log"
    with open(log, "w") as fh:
        done = subprocess.run(builder_command(source, out, recipe, out / ".hf_cache"), stdout=fh, stderr=fh)
    shutil.rmtree(out / ".hf_cache", ignore_errors=True)
    if done.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-5:])
        raise RuntimeError(f"The ONNX model builder failed (exit {done.returncode}):\n{tail}\nFull log: {log}")


def quantize_int8(fp32_dir: Path, out: Path, exclude: tuple[str, ...] = (), per_channel: bool = False) -> None:
    """Dynamic int8 (weights int8, one scale per tensor or per output channel; activations
    quantized to uint8 per tensor at run time) of every MatMul except those named in
    ``exclude``; copies the runtime's side files."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(fp32_dir / ONNX_FILE),
        str(out / ONNX_FILE),
        weight_type=QuantType.QInt8,
        per_channel=per_channel,
        op_types_to_quantize=["MatMul"],
        nodes_to_exclude=list(exclude),
        use_external_data_format=True,
    )
    for name in SIDE_FILES:
        if (fp32_dir / name).is_file():
            shutil.copy2(fp32_dir / name, out / name)


def build_recipe(source: Path, recipe: Recipe, root: Path | None = None, force: bool = False) -> Path:
    """Build ``recipe`` from the model folder ``source`` (cached); return the ONNX folder."""
    source = Path(source)
    check_precision(recipe.precision)
    folder = variant_dir(source, recipe, root)
    if is_built(folder) and not force:
        return folder
    fp32 = build_recipe(source, RECIPES["onnx_fp32"], root) if recipe.tool == "quantize_dynamic" else None
    record = {"source": str(source), "recipe": recipe.__dict__ | {"key": recipe.key()}}
    with build_directory(folder, MARKER, record) as tmp:
        if fp32 is not None:
            quantize_int8(fp32, tmp, recipe.exclude, recipe.per_channel)
        else:
            _run_builder(source, tmp, recipe)
        if recipe.tie_embedding:
            tie_embedding(tmp)
        check_model(tmp)
    return folder


EMBEDDING = "/model/embed_tokens/Gather"


def tie_embedding(folder: Path) -> None:
    """Let the embedding read the quantized head's weights (in place).

    A model with tied embeddings stores one matrix for the token embedding and the output
    head. The builder's int8 export quantizes the head (``MatMulNBits``) and leaves the
    embedding's ``Gather`` in fp32, over a third of a 135 M model's file. onnxruntime's
    ``GatherBlockQuantized`` looks rows up in the same 8-bit blocks and scales, as the
    builder already does for its 4-bit export, so the fp32 copy goes.
    """
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(folder / ONNX_FILE))
    graph = model.graph
    head = next((n for n in graph.node if n.op_type == "MatMulNBits" and n.name.startswith("/lm_head")), None)
    gather = next((n for n in graph.node if n.name == EMBEDDING and n.op_type == "Gather"), None)
    if head is None or gather is None:
        raise ValueError(
            f"{folder} has no quantized head and fp32 embedding to tie (a MatMulNBits /lm_head and a Gather "
            f"{EMBEDDING} expected). Fix: tie_embedding needs the builder's int8 export of a tied-embedding model."
        )
    attrs = {a.name: helper.get_attribute_value(a) for a in head.attribute}
    rows = numpy_helper.from_array(
        np.array([attrs["N"], attrs["K"] * attrs["bits"] // 8], np.int64), "embed_rows_shape"
    )
    reshape = helper.make_node(
        "Reshape", [head.input[1], rows.name], ["embed_rows"], name="/model/embed_tokens/Reshape"
    )
    lookup = helper.make_node(
        "GatherBlockQuantized",
        ["embed_rows", gather.input[1], head.input[2], *head.input[3:4]],  # blocks, token ids, scales[, zero points]
        list(gather.output),
        name="/model/embed_tokens/GatherBlockQuantized",
        domain="com.microsoft",
        bits=attrs["bits"],
        block_size=attrs["block_size"],
        gather_axis=0,
        quantize_axis=1,
    )
    at = list(graph.node).index(gather)
    graph.node.remove(gather)
    graph.node.insert(at, lookup)
    graph.node.insert(at, reshape)
    kept = [t for t in graph.initializer if t.name != gather.input[0]]
    del graph.initializer[:]
    graph.initializer.extend([*kept, rows])
    for path in folder.glob(f"{ONNX_FILE}*"):
        path.unlink()
    onnx.save(model, str(folder / ONNX_FILE), save_as_external_data=True, location=f"{ONNX_FILE}.data")


def build_variant(source: Path, name: str, root: Path | None = None, force: bool = False) -> Path:
    return build_recipe(source, get_variant(name), root, force)


def check_model(folder: Path) -> list[str]:
    """Run ``onnx.checker`` on the exported graph; return the operators it had to relabel.

    The builder emits onnxruntime's fused operators. Those in the ``com.microsoft`` domain
    (GroupQueryAttention, MatMulNBits, ...) pass the checker as custom ops, but onnxruntime
    registers ``SimplifiedLayerNormalization`` (RMSNorm) in the default ONNX domain, where
    the standard has no such operator, so the checker would stop at the first one. We check
    a copy in which those nodes say which runtime they belong to; everything else about
    the graph (types, edges, opset imports) is checked as is.
    """
    import onnx

    model = onnx.load(str(Path(folder) / ONNX_FILE), load_external_data=False)
    relabelled = set()
    for node in model.graph.node:
        if node.domain in ("", "ai.onnx") and not onnx.defs.has(node.op_type):
            relabelled.add(node.op_type)
            node.domain = "com.microsoft"
    if relabelled and not any(op.domain == "com.microsoft" for op in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    with contextlib.chdir(folder):  # the checker resolves external weights relative to the working dir
        onnx.checker.check_model(model)
    return sorted(relabelled)


# --- what is inside ---------------------------------------------------------------------


def onnx_files_mib(folder: Path) -> float:
    """Size on disk of the model files (graph + weights), in MiB."""
    return files_mib(folder, f"{ONNX_FILE}*")


def size_breakdown(folder: Path) -> dict[str, float]:
    """MiB of the stored weights by kind: quantized integers, their scales and zero points,
    and weights left in floating point (embeddings, norms, excluded layers)."""
    import onnx
    from onnx import TensorProto

    model = onnx.load(str(Path(folder) / ONNX_FILE), load_external_data=False)
    parts = {"quantized_mib": 0.0, "scales_mib": 0.0, "float_mib": 0.0}
    for tensor in model.graph.initializer:
        size = _stored_bytes(tensor) / MIB
        if tensor.data_type in (TensorProto.UINT8, TensorProto.INT8, TensorProto.UINT4, TensorProto.INT4):
            key = "scales_mib" if "zero_point" in tensor.name or tensor.name.endswith("_zp") else "quantized_mib"
        elif "scale" in tensor.name:
            key = "scales_mib"
        else:
            key = "float_mib"
        parts[key] += size
    return parts


def _stored_bytes(tensor: Any) -> int:
    for entry in tensor.external_data:
        if entry.key == "length":
            return int(entry.value)
    if tensor.raw_data:
        return len(tensor.raw_data)
    # small tensors (e.g. quantize_dynamic's per-tensor scales and zero points) are stored
    # inline in the typed fields (float_data, int32_data, ...), not in raw_data
    from onnx import numpy_helper

    return numpy_helper.to_array(tensor).nbytes
