"""Section 1, the introduction: ``steps`` (what notebook 01 measures: anatomy, footprint, the task's
floor, pruning, sparse storage, the fleet's arithmetic) and ``report`` (the sentence after each)."""
