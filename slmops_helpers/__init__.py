"""Helpers for the SLMOps course: the heavy lifting behind the notebooks and labs.

Modules follow the life cycle of a small language model:

- ``config``    profiles (smoke / full) and where things live on disk
- ``models``    model presets, offline preparation, device choice, footprint
- ``data``      the course dataset, chat formatting and the task metric
- ``inference`` generation with per-token timing
- ``compress``  quantization and pruning of single weight tensors
- ``distill``   teacher data, layer-kept students, the KD loss (section 2)
- ``training``  the shared training loop and training-memory measurements
- ``finetune``  full, LoRA, QLoRA, IA3; adapters, merging, the tuned model (section 3)
- ``deploy``    ONNX export, quantization, runtime, package, benchmark, server (section 4)
- ``fleet``     a fleet footprint and cost calculator; device profiles and variant choice
- ``rollout``   staged rollout to a simulated edge fleet, with halt and rollback
- ``registry``  a local, file-based model registry with lineage
- ``gate``      the quality gate: candidate vs reference metrics under a policy
- ``pipeline``  the capstone's release steps (notebook 05)
- ``metrics``   the metrics contract: one flat JSON file per notebook
- ``runner``    executes notebooks headlessly with papermill
- ``site``      renders the executed notebooks into a static course site
- ``labs``      the lab-check framework (check / hint / solution)
"""

__version__ = "0.1.0"
