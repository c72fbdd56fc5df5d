"""Quantization-aware fine-tuning against round-to-nearest, for the builder's plain int4 export.

    .venv/bin/python benchmarks/qat_int4.py --steps 60 --lr 5e-5

Fine-tunes the course's tuned model (or ``--source``) with the int4 grid in its forward pass on
training tickets (``deploy.qat``), exports it with the builder's int4 (symmetric blocks of 32,
the ``onnx_int4_rtn`` lever of section 4.3), and measures it beside the same export without QAT,
each paired against the fp32 export on the profile's validation tickets (``--tickets``, 48 by
default, as the full reference run): score difference with its 95 % interval, the one-sided
drop bound the course's gate reads, mean per-token KL from fp32, size, tokens/s. Comparing
recipes is a choice, so it reads validation tickets only. Run it alone: it times decoding.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from slmops_helpers import data
from slmops_helpers.data import format_chat, format_target
from slmops_helpers.deploy import bench, export, qat, quant_study
from slmops_helpers.finetune import tuned_dir
from slmops_helpers.pipeline import gate
from slmops_helpers.uncertainty import TicketScores, drop_upper_bound, paired_difference


def measure(name: str, folder: Path, rows, settings, prompts, references, fp32: dict | None) -> dict:
    raw = bench.measure_isolated("onnx", folder, settings)
    tickets = TicketScores.from_answers(raw["answers"], rows)
    logprobs = quant_study.teacher_forced(bench.load_runtime("onnx", folder), prompts, references)
    row = {"variant": name, "size_mib": bench.variant_mib("onnx", folder), "score": tickets.mean,
           "tok_s": bench.summarize(raw)["tok_s"], "tickets": tickets, "logprobs": logprobs}  # fmt: skip
    if fp32 is not None:
        diff = paired_difference(tickets, fp32["tickets"])
        rule = gate.score_rule()
        row |= {"diff": diff.estimate, "diff_low": diff.low, "diff_high": diff.high,
                "drop_bound": drop_upper_bound(tickets, fp32["tickets"], rule.significance),
                "kl": quant_study.mean_kl(fp32["logprobs"], logprobs)}  # fmt: skip
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=None, help="model folder (default: the course's tuned model)")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--tickets", type=int, default=48)
    parser.add_argument("--train-rows", type=int, default=480, help="training tickets QAT reads")
    parser.add_argument("--control", action="store_true", help="also the same fine-tuning in float, then int4")
    args = parser.parse_args()
    source = args.source or tuned_dir()
    splits = data.load_splits()
    rows = list(splits["validation"])[: args.tickets]
    config = qat.QatConfig(steps=args.steps, batch=args.batch, lr=args.lr)
    start = time.perf_counter()
    trained = qat.fine_tune(source, list(splits["train"])[: args.train_rows], config)
    qat_s = time.perf_counter() - start
    rtn = quant_study.BY_NAME["onnx_int4_rtn"].recipe
    folders = {
        "onnx_fp32": export.build_variant(source, "onnx_fp32"),
        "onnx_int4_rtn": export.build_recipe(source, rtn),
        "onnx_int4_rtn_qat": export.build_recipe(trained, rtn),
    }
    if args.control:  # the same steps in float: what more training alone buys, before and after rounding
        floated = qat.fine_tune(source, list(splits["train"])[: args.train_rows], replace(config, on_grid=False))
        folders |= {
            "onnx_fp32_float_ft": export.build_variant(floated, "onnx_fp32"),
            "onnx_int4_rtn_float_ft": export.build_recipe(floated, rtn),
        }
    settings = bench.course_settings(source, "full", rows)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    prompts = [format_chat(tokenizer, r) for r in rows]
    references = [format_target(r) + tokenizer.eos_token for r in rows]
    fp32 = measure("onnx_fp32", folders["onnx_fp32"], rows, settings, prompts, references, None)
    out = [measure(n, f, rows, settings, prompts, references, fp32) for n, f in list(folders.items())[1:]]
    print(f"QAT: {config} on {args.train_rows} training tickets, {qat_s:.0f} s; fp32 scores {fp32['score']:.1f}")
    print(f"on {len(rows)} validation tickets; gate margin {gate.score_rule().limit:g} points")
    for r in out:
        print(f"{r['variant']:<20} {r['size_mib']:6.1f} MiB  score {r['score']:5.1f}  "
              f"diff {r['diff']:+5.1f} [{r['diff_low']:+.1f}, {r['diff_high']:+.1f}]  bound {r['drop_bound']:4.1f}  "
              f"KL {r['kl']:.3f}  {r['tok_s']:.0f} tok/s")  # fmt: skip
    history = json.loads((trained / qat.MARKER).read_text())["history"]
    print("QAT history:", [(h["step"], round(h.get("val_loss", h["train_loss"]), 3)) for h in history])


if __name__ == "__main__":
    main()
