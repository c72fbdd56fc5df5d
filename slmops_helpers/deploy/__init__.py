"""Section 4: from a fine-tuned PyTorch model to a local, served, benchmarked package.

One module per step, in the order notebooks 04 and 04b take them:

- ``export``   PyTorch folder → ONNX with a KV cache (onnxruntime-genai's builder), fp16 / int8 / int4
- ``qat``      quantization-aware fine-tuning on the int4 export's own grid (``benchmarks/qat_int4.py``)
- ``runtime``  greedy, streaming generation with onnxruntime (no torch needed), chat prompts;
               onnxruntime-genai's own generator timed the same way
- ``llamacpp`` the same model as GGUF (llama.cpp's converter and quantizer) and run by llama.cpp;
               ``llamacpp_setup`` builds llama.cpp's binding for this CPU at setup
- ``package``  a Foundry-Local-style model folder (ONNX or GGUF) with a hashed manifest, and its
               verifying loader
- ``bench``    size, load time, time to first token, ms per token, peak RSS, quality; ``slmops bench``
- ``decision`` what notebook 04 chose (the model, the gated ONNX and GGUF variants, the benchmark behind
               them), kept for notebook 04b, which packages and serves it
- ``serve``    an OpenAI-compatible local server; ``slmops serve``; ``chat_api`` its protocol (the
               request validated, the response shapes), ``grammar`` JSON by schema (llguidance)
- ``checklist`` the module's validation checklist, run as code

``runtime``, ``llamacpp`` (to run a file), ``package``, ``grammar`` and ``serve`` never import torch, so a
deployed process stays small. ``config`` holds the section's sizes per profile.
"""

from .config import SIZES, DeployConfig, get_config

__all__ = ["SIZES", "DeployConfig", "get_config"]
