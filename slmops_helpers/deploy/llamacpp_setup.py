"""Install llama.cpp's Python binding with build flags this CPU can run, and keep llama.cpp's
own HF → GGUF converter beside it: ``python -m slmops_helpers.deploy.llamacpp_setup``
(``make setup`` runs it).

``llama-cpp-python`` ships as source only and compiles llama.cpp (about 3.5 min on 2 cores).
Its default *native* build segfaulted on its first decode on an AVX-512 + AMX Xeon; a build
with every AMX kernel off and the vector extensions named one by one ran there and was the
fastest tried. So the flags are read from this CPU's own feature list (``/proc/cpuinfo``),
never assumed: an AMD or older Intel CPU without AVX-512 gets an AVX2 build.

The wheel is cached per version *and* flag set (pip's own cache ignores ``CMAKE_ARGS``, so
an AVX-512 wheel could land on a CPU without it). The source archive also carries
``convert_hf_to_gguf.py`` with the ``conversion`` and ``gguf-py`` folders it runs with:
they are unpacked once, so exports work offline. When the build fails, setup goes on and
``availability()`` says why: notebook 04 then shows its ONNX rows only.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from .._io import atomic_directory, atomic_write_json
from ..config import cache_dir

VERSION = "0.3.36"
PACKAGE = "llama-cpp-python"
STATUS_FILE = "slmops_llama_cpp.json"  # in the environment (sys.prefix): what setup managed
CONVERTER_FILES = ("convert_hf_to_gguf.py", "conversion", "gguf-py")
AVX512_BASE = ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw")  # what GGML_AVX512 compiles for
# ggml option -> the /proc/cpuinfo flags it needs.
OPTIONAL_FLAGS = {
    "GGML_AVX": ("avx",),
    "GGML_AVX2": ("avx2",),
    "GGML_FMA": ("fma",),
    "GGML_F16C": ("f16c",),
    "GGML_AVX_VNNI": ("avx_vnni",),
    "GGML_AVX512": AVX512_BASE,
    "GGML_AVX512_VNNI": (*AVX512_BASE, "avx512_vnni"),
    "GGML_AVX512_VBMI": (*AVX512_BASE, "avx512vbmi"),
    "GGML_AVX512_BF16": (*AVX512_BASE, "avx512_bf16"),
}
# Native detection and AMX off (the AMX build crashed); LLAVA_BUILD off: the course runs no
# image model, and skipping the multimodal library shortens the compile.
ALWAYS_OFF = ("GGML_NATIVE", "GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16", "LLAVA_BUILD")


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The feature flags of this CPU (the first ``flags`` line of ``/proc/cpuinfo``)."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.is_file() else ""
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def build_flags(flags: set[str]) -> list[str]:
    """The CMake options for a CPU with ``flags``: each vector extension on only if the CPU has it."""
    options = [f"-D{name}=OFF" for name in ALWAYS_OFF]
    options += [f"-D{name}={'ON' if set(need) <= flags else 'OFF'}" for name, need in OPTIONAL_FLAGS.items()]
    return options


def flag_set_name(options: list[str]) -> str:
    """A short name for a flag set: ``avx512-<hash>``, ``avx2-<hash>`` or ``generic-<hash>``."""
    kind = "avx512" if "-DGGML_AVX512=ON" in options else "avx2" if "-DGGML_AVX2=ON" in options else "generic"
    return f"{kind}-{hashlib.sha256(' '.join(options).encode()).hexdigest()[:8]}"


def root() -> Path:
    return cache_dir() / "llama_cpp" / VERSION


def converter_dir() -> Path:
    """Where llama.cpp's converter (``convert_hf_to_gguf.py`` and its folders) is unpacked."""
    return root() / "converter"


def status_path() -> Path:
    return Path(sys.prefix) / STATUS_FILE


def availability() -> tuple[bool, str]:
    """(usable, reason): can this environment export GGUF and run llama.cpp? The reason names the fix."""
    try:
        import llama_cpp  # noqa: F401  (the binding setup built; it may be missing or broken)
    except Exception as err:  # an ImportError, or an OSError from a library built for another CPU
        note = ""
        if status_path().is_file():
            note = f" Setup recorded: {json.loads(status_path().read_text()).get('reason', '')}"
        return False, f"llama_cpp cannot be imported ({type(err).__name__}: {err}).{note} Fix: run `make setup`."
    if not (converter_dir() / CONVERTER_FILES[0]).is_file():
        return False, f"llama.cpp's converter is not unpacked in {converter_dir()}. Fix: run `make setup`."
    return True, "llama.cpp is installed"


def _pip(*args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True, env=env)


def source_archive() -> Path:
    """llama-cpp-python's source archive (downloaded once; it carries llama.cpp itself)."""
    folder = root() / "sdist"
    found = sorted(folder.glob("llama_cpp_python-*.tar.gz")) if folder.is_dir() else []
    if not found:
        with atomic_directory(folder) as tmp:
            _pip("download", "--quiet", "--no-deps", "--no-binary", ":all:", f"{PACKAGE}=={VERSION}", "-d", str(tmp))
        found = sorted(folder.glob("llama_cpp_python-*.tar.gz"))
    return found[0]


def unpack_converter(archive: Path) -> Path:
    """Extract the converter and the folders it imports from the archive, atomically."""
    out = converter_dir()
    if (out / CONVERTER_FILES[0]).is_file():
        return out
    with tarfile.open(archive) as tar, atomic_directory(out) as tmp:
        prefix = f"{tar.getnames()[0].split('/')[0]}/vendor/llama.cpp/"
        members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
        wanted = [m for m in members if m.name[len(prefix) :].split("/")[0] in CONVERTER_FILES]
        for member in wanted:
            member.name = member.name[len(prefix) :]
        tar.extractall(tmp, members=wanted, filter="data")
    return out


def build_wheel(archive: Path, options: list[str]) -> Path:
    """Compile the binding with ``options`` (cached per flag set); return the wheel."""
    folder = root() / f"wheel-{flag_set_name(options)}"
    wheels = sorted(folder.glob("*.whl")) if folder.is_dir() else []
    if not wheels:
        print(f"building {PACKAGE} {VERSION} with {' '.join(options)} (about 3.5 min on 2 cores)", flush=True)
        env = os.environ | {"CMAKE_ARGS": " ".join(options), "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2)}
        with atomic_directory(folder) as tmp:
            _pip("wheel", "--quiet", "--no-deps", "--no-cache-dir", "-w", str(tmp), str(archive), env=env)
        wheels = sorted(folder.glob("*.whl"))
    return wheels[0]


def install() -> dict[str, str]:
    """Build (or reuse) and install the binding, unpack the converter; record what happened."""
    options = build_flags(cpu_flags())
    status = {"version": VERSION, "flags": " ".join(options)}
    try:
        archive = source_archive()
        unpack_converter(archive)
        _pip("install", "--quiet", str(build_wheel(archive, options)))
        status |= {"ok": "yes", "reason": f"built for {flag_set_name(options)}"}
    except (subprocess.CalledProcessError, OSError, tarfile.TarError) as err:
        status |= {"ok": "no", "reason": f"the build failed ({err}); notebook 04 shows its ONNX rows only"}
    atomic_write_json(status_path(), status)
    return status


if __name__ == "__main__":
    result = install()
    print(f"llama.cpp: {result['reason']}")
