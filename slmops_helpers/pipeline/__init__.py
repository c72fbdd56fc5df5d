"""Section 5, the capstone: one new model version taken from training data to a fleet.

- ``stages``    the release's building blocks: find production, cached teacher answers, fine-tune
                and merge with parity, measure packages, choose what a device may receive, feedback
- ``steps``     notebook 05's release round, step by step, each returning its metric keys
- ``report``    notebook 05's readings, rendered from the metrics
- ``registry``  the local model registry: lineage, stages, sha256 checks (``slmops registry``)
- ``gate``      the quality gate: a candidate's metrics against a reference under a policy (``slmops gate``)
- ``rollout``   a staged rollout to a simulated fleet (``fleet``), halting on bad health
- ``config``    the round's sizes per profile
"""

from .config import SIZES, ReleaseConfig, get_config

__all__ = ["SIZES", "ReleaseConfig", "get_config"]
