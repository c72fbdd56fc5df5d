"""Helpers for the SLMOps course: the heavy lifting behind the notebooks and labs.

Modules follow the life cycle of a small language model:

- ``config``    profiles (smoke / full) and where things live on disk
- ``models``    model presets, offline preparation, device choice, footprint
- ``data``      the course dataset, chat formatting and the task metric
- ``inference`` generation with per-token timing
- ``compress``  quantization and pruning of single weight tensors
- ``fleet``     a fleet footprint and cost calculator
- ``metrics``   the metrics contract: one flat JSON file per notebook
- ``runner``    executes notebooks headlessly with papermill
- ``labs``      the lab-check framework (check / hint / solution)
"""

__version__ = "0.1.0"
