"""Helpers for the SLMOps course: the heavy lifting behind the notebooks and labs.

Modules follow the life cycle of a small language model, lowest layer first; a module
imports only from its own layer or below (``tests/unit/test_import_layers.py``):

- ``config``, ``_io``        profiles (smoke / full), paths, atomic writes, cached builds
- ``decoding/``              the token loop every runtime shares, and what builds on it: batched and
                             timed generation, speculative and constrained decoding, the drafts' race
- ``compress``               quantization and pruning of single weight tensors (section 1)
- ``plots``, ``diagrams``    figures; concept pictures (LoRA, the KV cache, a speculative round, a quant block)
- ``data/``                  the course dataset (its card and file beside the code), chat format, the task score
- ``metrics``                the metrics contract: one flat JSON file per notebook, units by suffix
- ``models``                 presets, offline preparation of the base model, loading, sizes
- ``reference``              the committed full-profile records a smoke run is read beside
- ``uncertainty``            bootstrap intervals, paired differences, tickets a gate needs
- ``training``               the shared training loop and training-memory measurements
- ``distributed``            the same training loop on N processes or GPUs
- ``fleet``                  device classes and fleet cost (sections 1, 4 and 5)
- ``evaluate``               scoring, timing and sizing models the same way in every section
- ``intro/``                 notebook 01's steps and readings (section 1)
- ``distill/``               teacher answers, layer-kept students, the KD loss (section 2)
- ``finetune/``              full, LoRA, QLoRA, IA3; adapters, merging; the tuned model (section 3)
- ``deploy/``                ONNX and GGUF export, runtimes, package, benchmark, server (section 4)
- ``pipeline/``              the capstone (section 5): registry, gate, rollout, the release round
- ``labs/``                  the labs: their framework, and one folder per lab (exercises, real-tool ones, quiz)
- ``course/``                notebook runs, widgets, the course site
- ``cli``                    the ``slmops`` command

Vocabulary, used the same way in code, metric keys and course text:

- **score**: the task score, 0-100 (``data.score_predictions``); never "task score" in a key.
- **trivial baselines** (section 1): majority and copy answers, no model; **undistilled**
  (section 2): the student trained without a teacher; **reference** (the gate): what a
  candidate is compared against, in section 5 the model in production.
- **profile**: ``smoke`` or ``full`` only; a kind of edge device is a **device class**.
- **variant**: a packaged precision (``onnx_int4``); **recipe**: how a variant is built
  (``deploy.export.RECIPES``).
- ``*Config``: every settings dataclass (``TrainConfig``, ``KDConfig``, ``FleetConfig``, ...).
- Units by suffix (``metrics.UNITS``): ``_mib`` MiB (2^20 bytes) for every size and
  memory figure, ``_ms`` / ``_s`` times, ``_pct`` percent, ``_tok_s`` tokens per second.
"""

__version__ = "0.1.0"
