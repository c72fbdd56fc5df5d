"""The ``slmops`` command: set-up checks and course runs from the terminal.

slmops doctor                 versions, device, RAM, and whether the model is ready
slmops prepare [--model M] [--tuned] [--exports]
                              convert the offline model into the cache (once); --tuned: also fine-tune it;
                              --exports: also build notebook 04's ONNX and GGUF exports of the tuned model
slmops run --profile smoke    execute the notebooks into artifacts/, print metrics
slmops summary                print the recorded metrics again
slmops render-labs            regenerate labs/*.ipynb from labs/source/
slmops bench [--source DIR] [--profile P] [--variants onnx_int4,...] [--no-gguf]
                              export (cached) and benchmark ONNX and GGUF variants beside torch eager; print the table
slmops serve PACKAGE [--port N]
                              a local OpenAI-compatible server for an ONNX or GGUF package on 127.0.0.1
slmops site [--no-run]        render the executed notebooks into a static site, artifacts/site/
slmops registry list|show ID|verify ID|promote ID --stage S
                              the local model registry (artifacts/registry/): lineage, stages, sha256 checks
slmops gate --candidate A --reference B --policy P
                              quality gate on recorded metrics: exit 0 pass, 1 fail (says which metric, by how much)
slmops train tuned|student|method [--method lora] [--profile P] [--accumulation K] [--mixed-precision bf16]
                              one training step of the course, on one process or launched on N:
                              torchrun --nproc_per_node N -m slmops_helpers.cli train ...  (CPU or GPUs)
                              accelerate launch --num_processes N -m slmops_helpers.cli train ...  (GPUs)
"""

from __future__ import annotations

import argparse
import platform
import sys
from importlib import metadata
from typing import TYPE_CHECKING, Any

from . import models
from .config import PROFILES, artifacts_dir, cache_dir, get_profile, project_root

if TYPE_CHECKING:  # torch: only `slmops train` needs it
    from .training import TrainConfig


def _doctor(args: argparse.Namespace) -> int:
    import psutil
    import torch

    from .metrics import package_versions  # lazy, like every subcommand: `slmops --help` stays instant

    print(f"python        {platform.python_version()} ({sys.executable})")
    for key, version in package_versions().items():
        print(f"{key.removeprefix('version_'):<13} {version}")
    print(f"device        {models.pick_device()} (cuda={torch.cuda.is_available()})")
    mem = psutil.virtual_memory()
    print(
        f"RAM           {mem.total / 2**30:.1f} GiB total, {mem.available / 2**30:.1f} GiB available; "
        f"{psutil.cpu_count()} CPUs"
    )
    print(f"cache         {cache_dir()}")
    preset = models.resolve_preset(args.model)
    folder = models.prepared_dir(preset)
    if preset.gguf is None:
        if models.missing_offline(preset.hub_id):
            print(f"model         NOT ready. {models.ModelUnavailableError(preset)}")
            return 1
        print(f"model         {preset.name}: loads from the hub ({preset.hub_id}); needs network once")
        return 0
    if models.is_prepared(folder):
        print(f"model         {preset.name}: ready at {folder}")
        return 0
    try:
        source = models.locate_gguf(preset.gguf)
        print(f"model         {preset.name}: NOT prepared (source {source.name} is fine). Fix: run `slmops prepare`.")
    except (FileNotFoundError, ValueError) as err:
        print(f"model         {preset.name}: NOT ready. {err}")
    return 1


def _prepare(args: argparse.Namespace) -> int:
    import time

    if args.exports and not args.tuned:
        print("--exports builds notebook 04's exports of the tuned model. Fix: add --tuned.", file=sys.stderr)
        return 2
    start = time.perf_counter()
    where = models.prepare_model(args.model, force=args.force)
    print(f"{args.model} ready at {where} ({time.perf_counter() - start:.1f} s)")
    if args.tuned:
        from .finetune import prepare_tuned_model  # torch and peft

        start = time.perf_counter()
        where = prepare_tuned_model(args.model, force=args.force)
        print(f"tuned {args.model} ready at {where} ({time.perf_counter() - start:.1f} s)")
    if args.exports:
        from .deploy import llamacpp, steps  # onnxruntime's builder, llama.cpp's converter

        start = time.perf_counter()
        built = steps.build_course_exports(where)
        print(f"{len(set(built.values()))} exports of {where.name} ready ({time.perf_counter() - start:.1f} s)")
        usable, reason = llamacpp.availability()
        if not usable:
            print(f"GGUF exports skipped: {reason}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from .course.runner import run_course  # papermill
    from .course.watchdog import NotebookStalled  # pulls in papermill, as running notebooks does

    try:
        run_course(args.profile, only=args.only.split(",") if args.only else None)
    except NotebookStalled as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def _summary(args: argparse.Namespace) -> int:
    import json

    from .metrics import format_summary  # lazy, like every subcommand

    folder = artifacts_dir() / "metrics"
    files = sorted(folder.glob("*.json"))
    if not files:
        state = "does not exist" if not folder.is_dir() else "holds no metrics file"
        print(f"No metrics yet: {folder} {state}. Fix: run `make course` first.")
        return 1
    print(format_summary({f.stem: json.loads(f.read_text()) for f in files}))
    return 0


def _render_labs(args: argparse.Namespace) -> int:
    from .labs.render import render_all  # nbformat

    root = project_root()
    for path in render_all(root / "labs" / "source", root / "labs"):
        print(f"wrote {path.relative_to(root)}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ._io import atomic_write_json  # lazy, like every subcommand
    from .deploy import llamacpp  # llama-cpp-python, when installed
    from .deploy.bench import format_table, run_benchmark  # onnxruntime
    from .deploy.export import deploy_source  # onnxruntime-genai's builder
    from .deploy.quant_study import variant_folders  # the study's levers, by name

    source, label = deploy_source(args.source)
    print(f"benchmarking {label}: {source}")
    names = [name for name in args.variants.split(",") if name]
    if not args.no_gguf and llamacpp.availability()[0] and not any(n.startswith("gguf_") for n in names):
        names += list(llamacpp.GGUF_TYPES)  # llama.cpp's rows too, unless named or left out
    table, _ = run_benchmark(source, args.profile, *variant_folders(source, names))
    print(format_table(table))
    if args.out:
        atomic_write_json(Path(args.out), {"source": str(source), "profile": args.profile, "table": table})
    return 0


def _serve(args: argparse.Namespace) -> int:
    from .deploy.serve import ServeConfig, serve  # onnxruntime

    serve(args.package, args.host, args.port, ServeConfig(max_tokens=args.max_tokens))
    return 0


def _site(args: argparse.Namespace) -> int:
    from .course.site import build_site  # nbconvert

    index = build_site(run_missing=not args.no_run, profile=args.profile)
    print(f"wrote {index} (opens from disk; needs no network)")
    return 0


def _registry(args: argparse.Namespace) -> int:
    from .pipeline.registry import run_command  # lazy, like every subcommand

    return run_command(args.action, args.id, stage=args.stage, root=args.root)


def _gate(args: argparse.Namespace) -> int:
    from .pipeline.gate import run_command  # lazy, like every subcommand

    return run_command(args.candidate, args.reference, args.policy, registry_root=args.registry)


def _train(args: argparse.Namespace) -> int:
    import dataclasses
    import json
    import os

    import torch

    from . import distributed  # torch

    # every check before any model is loaded: a launch that cannot work fails in seconds
    device = models.pick_device(args.device)
    distributed.check_devices(use_gpu=device == "cuda")
    if device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))  # one GPU per process; "cuda" now means it
    distributed.check_trainable_on(args.model, device)
    if args.step == "tuned":
        from .finetune import tuned  # torch and peft

        base = tuned.TUNED_CONFIG.config
    elif args.step == "student":
        from .distill import get_config, steps  # torch and peft

        base = steps.train_config(get_config(args.profile))
    else:
        from .finetune import get_config, steps  # torch and peft

        base = steps.train_config(get_config(args.profile), args.method)
    mixed = args.mixed_precision or os.environ.get("ACCELERATE_MIXED_PRECISION")  # accelerate launch's flag too
    config = dataclasses.replace(
        base,
        **{k: v for k, v in {"max_steps": args.steps, "batch_size": args.batch_size}.items() if v is not None},
        gradient_accumulation_steps=args.accumulation,
        mixed_precision=None if mixed in (None, "no") else mixed,
    )
    distributed.check_batch(config.batch_size, distributed.world_size(), config.gradient_accumulation_steps)
    distributed.check_mixed_precision(config.mixed_precision, device)
    summary = {"tuned": _train_tuned, "student": _train_student, "method": _train_method}[args.step](
        args, config, device
    )
    if distributed.is_main_process():
        print(json.dumps({"step": args.step, "processes": distributed.world_size(), "device": device, **summary}))
    return 0


def _train_tuned(args: argparse.Namespace, config: TrainConfig, device: str) -> dict[str, Any]:
    import dataclasses

    from .finetune import tuned  # torch and peft

    recipe = dataclasses.replace(tuned.TUNED_CONFIG, config=config)
    return {"folder": str(tuned.prepare_tuned_model(args.model, recipe, device=device, force=args.force))}


def _train_student(args: argparse.Namespace, config: TrainConfig, device: str) -> dict[str, Any]:
    """Notebook 02's distilled student: logit KD from the tuned model on the human references."""
    from . import distill, distributed  # torch
    from .distill import steps  # torch and peft
    from .finetune import load_tuned_model  # torch and peft

    sizes = distill.get_config(args.profile)
    teacher, tokenizer = load_tuned_model(args.model, device=device)
    splits = steps.course_splits(sizes.n_val, get_profile(args.profile).n_eval)
    teacher_rows, prompts = steps.teacher_prompts(tokenizer, splits.train, sizes)
    for main_turn in (True, False):  # the main process fills the teacher-answer cache, then the others read it
        if distributed.is_main_process() == main_turn:
            outputs = distill.generate_teacher_outputs(teacher, tokenizer, prompts, sizes.teacher_max_new_tokens)
        distributed.barrier(device)
    sets = steps.training_sets(tokenizer, teacher_rows, distill.validate_outputs(teacher_rows, outputs))
    val_examples = distill.encode_distillation_set(tokenizer, splits.val, None, max_length=256)
    keep = steps.choose_blocks(teacher, val_examples, tokenizer.pad_token_id, sizes.param_budget).keep
    setup = steps.StudentSetup(teacher, tokenizer, keep, splits.val, val_examples, sizes)
    _, result = steps.train_student(setup, "distilled", sets["references"], steps.DISTILLED, config)
    return {
        "keep": keep,
        "train_loss": [h["train_loss"] for h in result.history],
        "best_step": result.best_step,
        "best_val_score": result.best_val_score,
        "s_per_step": result.s_per_step,
    }


def _train_method(args: argparse.Namespace, config: TrainConfig, device: str) -> dict[str, Any]:
    import tempfile
    from pathlib import Path

    import torch

    from . import data, distributed  # torch
    from .finetune import get_config, steps  # torch and peft

    sizes = get_config(args.profile)
    if args.method == "qlora":
        model, tokenizer, _ = steps.load_qlora_base(args.model, device=device)
    else:
        model, tokenizer = models.load_model(args.model, device=device, dtype=torch.float32)
    splits = {name: list(rows) for name, rows in data.load_splits().items()}
    split = {
        "train": steps.encode_rows(tokenizer, splits["train"]),
        "validation": steps.encode_rows(tokenizer, splits["validation"][: sizes.val_rows]),
        "test": splits["test"][: sizes.eval_rows],
    }
    spec, max_new = steps.METHOD_SPECS[args.method], get_profile(args.profile).max_new_tokens
    # run_method saves the adapter on every process: only the main one writes where asked
    with tempfile.TemporaryDirectory(prefix="slmops-rank-") as scratch:
        out = Path(args.out or artifacts_dir() / "train") if distributed.is_main_process() else Path(scratch)
        _, run = steps.run_method(args.method, model, tokenizer, spec, config, split, max_new, out)
    return {
        "method": args.method,
        "artifact": str(out / args.method),
        "train_loss": [h["train_loss"] for h in run.training.history],
        "best_step": run.training.best_step,
        "best_val_loss": run.training.best_val_loss,
        "s_per_step": run.training.s_per_step,
        "score": run.scores["score"],
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slmops", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=metadata.version("slmops-course"))
    sub = parser.add_subparsers(dest="command", required=True)
    doctor = sub.add_parser("doctor", help="versions, device, RAM, model readiness")
    doctor.add_argument("--model", default=models.DEFAULT_MODEL)
    doctor.set_defaults(func=_doctor)
    prepare = sub.add_parser("prepare", help="prepare the offline model cache")
    prepare.add_argument("--model", default=models.DEFAULT_MODEL)
    prepare.add_argument("--force", action="store_true", help="convert again even if the cache is complete")
    prepare.add_argument(
        "--tuned",
        action="store_true",
        help="also fine-tune the course's tuned model (sections 2 and 4; minutes on CPU)",
    )
    prepare.add_argument(
        "--exports",
        action="store_true",
        help="with --tuned: also build notebook 04's ONNX and GGUF exports of the tuned model (cached; minutes on CPU)",
    )
    prepare.set_defaults(func=_prepare)
    run = sub.add_parser("run", help="execute the course notebooks with papermill")
    run.add_argument("--profile", choices=sorted(PROFILES), default="smoke")
    run.add_argument(
        "--only", help="comma-separated notebook numbers, e.g. 01,02 (04: both parts of section 4; 04b: its second)"
    )
    run.set_defaults(func=_run)
    sub.add_parser("summary", help="print recorded metrics").set_defaults(func=_summary)
    sub.add_parser("render-labs", help="regenerate the exercise notebooks").set_defaults(func=_render_labs)
    bench = sub.add_parser("bench", help="export and benchmark ONNX and GGUF variants beside torch eager")
    bench.add_argument(
        "--source", help="model folder to deploy (default: notebook 03's merged model, else the tuned one)"
    )
    bench.add_argument("--profile", choices=sorted(PROFILES), default="smoke")
    bench.add_argument(
        "--variants",
        default="onnx_fp32,onnx_fp16,onnx_int8,onnx_int4",
        help="comma-separated: the course's variants, section 4.3's levers (e.g. onnx_int4_blocksize16) or GGUF types",
    )
    bench.add_argument("--no-gguf", action="store_true", help="leave out llama.cpp's GGUF rows")
    bench.add_argument("--out", help="also write the table as JSON here")
    bench.set_defaults(func=_bench)
    serve = sub.add_parser("serve", help="serve a model package with an OpenAI-compatible API on loopback")
    serve.add_argument("package", help="package folder (notebook 04b writes artifacts/04_deployment/package)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    serve.add_argument("--max-tokens", type=int, default=256, help="upper bound on max_tokens per request")
    serve.set_defaults(func=_serve)
    site = sub.add_parser("site", help="render the executed notebooks into a static site (artifacts/site/)")
    site.add_argument("--profile", choices=sorted(PROFILES), default="smoke", help="profile for notebooks not run yet")
    site.add_argument("--no-run", action="store_true", help="do not run missing notebooks; list them as not run")
    site.set_defaults(func=_site)
    registry = sub.add_parser("registry", help="list, show, verify or promote registered model packages")
    registry.add_argument("action", choices=["list", "show", "verify", "promote"])
    registry.add_argument("id", nargs="?", help="entry id, e.g. support-assistant-v2 (see `slmops registry list`)")
    registry.add_argument("--stage", help="promote: the new stage; list: only this stage")
    registry.add_argument("--root", help="registry folder (default artifacts/registry)")
    registry.set_defaults(func=_registry)
    gate = sub.add_parser("gate", help="check a candidate's metrics against a reference under a policy")
    gate.add_argument("--candidate", required=True, help="metrics JSON file or registry entry id")
    gate.add_argument("--reference", help="metrics JSON file or registry entry id (needed by relative checks)")
    gate.add_argument("--policy", required=True, help="policy YAML, e.g. notebooks/configs/gate.yaml")
    gate.add_argument("--registry", help="registry folder for entry ids (default artifacts/registry)")
    gate.set_defaults(func=_gate)
    train = sub.add_parser("train", help="run one training step of the course (launchable on N processes)")
    train.add_argument(
        "step", choices=["tuned", "student", "method"], help="the tuned model; section 2's student; a section-3 method"
    )
    train.add_argument("--method", choices=["full", "lora", "qlora", "ia3"], default="lora")
    train.add_argument("--profile", choices=sorted(PROFILES), default="smoke", help="notebook 02's / 03's sizes")
    train.add_argument("--model", default=models.DEFAULT_MODEL)
    train.add_argument("--device", help="cpu or cuda (default: the best available)")
    train.add_argument("--steps", type=int, help="override the step's max_steps")
    train.add_argument("--batch-size", type=int, help="override the global batch (split across processes)")
    train.add_argument("--accumulation", type=int, default=1, help="micro-batches per step and process")
    train.add_argument("--mixed-precision", choices=["bf16", "fp16"], help="autocast on CUDA")
    train.add_argument("--force", action="store_true", help="tuned: train again even if cached")
    train.add_argument("--out", help="method: where the adapter goes (default artifacts/train)")
    train.set_defaults(func=_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, PermissionError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
