"""A Foundry-Local-style model package: the model files of one runtime (ONNX for onnxruntime,
or GGUF for llama.cpp), their side files, an ``inference_model.json`` (model name and prompt
template) and a ``manifest.json`` with the runtime, version, lineage and the sha256 of every
file. ``load_package`` verifies every hash, refuses a package that was changed after it was
written, and loads it with its runtime: one contract, so ``slmops serve`` answers either.

Layout::

    package/
      model.onnx, model.onnx.data          the decoder (one variant), or model.gguf
      genai_config.json, tokenizer.json, tokenizer_config.json, chat_template.jinja
      inference_model.json                 {"Name": ..., "PromptTemplate": {"prompt": "...{Content}..."}}
      manifest.json                        written last; lists and hashes everything above
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from .._io import atomic_directory, atomic_write_json
from ..models import sha256_file
from .export import ONNX_FILE, SIDE_FILES
from .llamacpp import GGUF_FILE, GGUF_SIDE_FILES, LlamaCppLM
from .runtime import OnnxCausalLM, render_chat, special_tokens

CONTENT = "{Content}"
MANIFEST = "manifest.json"
INFERENCE_MODEL = "inference_model.json"
FORMAT_VERSION = 2  # 2 records the runtime; a version-1 package is an ONNX one
RUNTIME_FILES = {"onnx": (ONNX_FILE, SIDE_FILES), "gguf": (GGUF_FILE, GGUF_SIDE_FILES)}  # weights, side files


class PackageError(ValueError):
    """A package is incomplete, changed since it was written, or malformed."""


def prompt_template(chat_template: str, system_prompt: str | None = None, tokens: dict[str, str] | None = None) -> str:
    """The model's chat template rendered around a ``{Content}`` placeholder: the string a
    Foundry-style runtime fills with the user's message (same text PyTorch would see).
    ``tokens`` are the special tokens the template may print (see ``special_tokens``)."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    template = render_chat(chat_template, [*messages, {"role": "user", "content": CONTENT}], **(tokens or {}))
    validate_prompt_template(template)
    return template


def validate_prompt_template(template: Any) -> None:
    if not isinstance(template, str) or template.count(CONTENT) != 1:
        raise PackageError(
            f"The prompt template must be a string with exactly one {CONTENT} placeholder (where the user's "
            f"message goes); got {template!r:.120}. Fix: put {CONTENT} once where the message belongs."
        )


def validate_inference_model(spec: Any) -> None:
    """Raise ``PackageError`` unless ``spec`` is a usable ``inference_model.json`` object."""
    if not isinstance(spec, dict) or not isinstance(spec.get("Name"), str) or not spec["Name"].strip():
        raise PackageError('inference_model.json needs a non-empty "Name" string. Fix: add "Name": "<model name>".')
    templates = spec.get("PromptTemplate")
    if not isinstance(templates, dict) or "prompt" not in templates:
        raise PackageError(
            'inference_model.json needs "PromptTemplate": {"prompt": "...{Content}..."}. Fix: add the prompt template.'
        )
    validate_prompt_template(templates["prompt"])


def fill_prompt(spec: dict[str, Any], content: str) -> str:
    """The user's message placed into the package's prompt template."""
    return spec["PromptTemplate"]["prompt"].replace(CONTENT, content)


def runtime_of(variant_dir: Path) -> str:
    """Which runtime an exported variant folder is for, from the model file it holds."""
    for runtime, (weights, _) in RUNTIME_FILES.items():
        if (Path(variant_dir) / weights).is_file():
            return runtime
    raise FileNotFoundError(
        f"{variant_dir} holds neither {ONNX_FILE} nor {GGUF_FILE}. "
        "Fix: export the variant first (export.build_variant or llamacpp.build_gguf)."
    )


def write_package(
    variant_dir: Path, out: Path, name: str, version: str, lineage: dict[str, Any], system_prompt: str | None = None
) -> Path:
    """Copy one exported variant (ONNX or GGUF) into ``out`` as a package, atomically; return ``out``."""
    variant_dir = Path(variant_dir)
    runtime = runtime_of(variant_dir)
    weights, side_files = RUNTIME_FILES[runtime]
    files = [p for p in variant_dir.iterdir() if p.name.startswith(weights) or p.name in side_files]
    spec = {
        "Name": name,
        "PromptTemplate": {
            "prompt": prompt_template(
                (variant_dir / "chat_template.jinja").read_text(), system_prompt, special_tokens(variant_dir)
            )
        },
    }
    validate_inference_model(spec)
    with atomic_directory(out) as tmp:
        for path in files:
            shutil.copy2(path, tmp / path.name)
        atomic_write_json(tmp / INFERENCE_MODEL, spec)
        hashes = {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in sorted(tmp.iterdir())}
        manifest = {
            "format_version": FORMAT_VERSION,
            "runtime": runtime,
            "name": name,
            "version": version,
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "lineage": lineage,
            "files": hashes,
        }
        atomic_write_json(tmp / MANIFEST, manifest)
    return Path(out)


def verify_package(folder: Path) -> dict[str, Any]:
    """Check every file against the manifest; return the manifest or raise ``PackageError``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PackageError(
            f"No package at {folder}: the folder does not exist. Fix: pass the folder notebook 04b writes "
            "(artifacts/04_deployment/package), or write one with write_package."
        )
    if not (folder / MANIFEST).is_file():
        raise PackageError(f"{folder} has no {MANIFEST}: not a package. Fix: write it with write_package.")
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = manifest["files"]
        if not isinstance(files, dict):
            raise TypeError("'files' is not an object")
    except (ValueError, KeyError, TypeError) as err:
        raise PackageError(
            f"{folder / MANIFEST} is corrupt ({type(err).__name__}: {err}). "
            "Fix: rebuild the package (write_package) or restore it from the registry."
        ) from err
    problems = []
    for name, expected in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif path.stat().st_size != expected["bytes"] or sha256_file(path) != expected["sha256"]:
            problems.append(f"{name} differs from the manifest (tampered or corrupted)")
    extra = sorted(p.name for p in folder.iterdir() if p.name not in manifest["files"] and p.name != MANIFEST)
    problems += [f"{name} is not in the manifest" for name in extra]
    if problems:
        raise PackageError(
            f"Package {folder} failed verification: {'; '.join(problems)}. "
            "Fix: rebuild the package (write_package) or restore it from the registry; never run it as is."
        )
    validate_inference_model(json.loads((folder / INFERENCE_MODEL).read_text()))
    package_runtime(manifest, folder)
    return manifest


def package_runtime(manifest: dict[str, Any], folder: Path) -> str:
    """The runtime a verified manifest names (a version-1 package is ONNX); unknown ones are refused."""
    runtime = manifest.get("runtime", "onnx" if manifest.get("format_version") == 1 else None)
    if runtime not in RUNTIME_FILES:
        raise PackageError(
            f"Package {folder} is for runtime {runtime!r}, which this course cannot run (it runs "
            f"{' and '.join(RUNTIME_FILES)} packages). Fix: rebuild the package with write_package."
        )
    return runtime


def load_package(folder: Path, threads: int | None = None) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Verify, then load with the package's runtime: (runtime model, manifest, inference_model spec)."""

    manifest = verify_package(folder)
    spec = json.loads((Path(folder) / INFERENCE_MODEL).read_text())
    if package_runtime(manifest, folder) == "gguf":
        return LlamaCppLM(folder, threads=threads), manifest, spec
    return OnnxCausalLM(folder, threads=threads), manifest, spec
