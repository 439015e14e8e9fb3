"""The prebuilt wheel ships corral's llama.cpp libraries under names of their own
(``libcorral-llama.so.0``, ...), so they live beside any other llama.cpp in one process. A
package built from source keeps llama.cpp's own sonames (``libllama.so.0``,
``libggml-base.so.0``, ...): when another package (llama-cpp-python, for one) has already
loaded libraries of those names, the dynamic loader would bind corral's native module to them
instead of corral's own, a different llama.cpp that fails to link or misbehaves. Such a build
refuses with a clear ImportError instead."""

from __future__ import annotations

import os
from pathlib import Path

_SHARED_SONAMES = ("libllama.so", "libggml.so", "libggml-base.so", "libllama-common.so")


def foreign_llama_cpp_libraries(maps: str, package_dir: Path) -> list[str]:
    """Paths in a /proc/self/maps text of llama.cpp libraries from outside `package_dir`."""
    found = []
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 6:
            continue
        path = fields[5].strip()
        name = os.path.basename(path)
        library = name.split(".so")[0] + ".so"  # libggml-base.so.0.25.3 -> libggml-base.so
        if library in _SHARED_SONAMES and os.path.dirname(path) != str(package_dir) and path not in found:
            found.append(path)
    return found


def refuse_foreign_llama_cpp() -> None:
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return  # not Linux: the sonames are not shared the same way
    package_dir = Path(__file__).resolve().parent
    if (package_dir / "libcorral-llama.so.0").exists():
        return  # the prebuilt wheel: its libraries have their own names
    foreign = foreign_llama_cpp_libraries(maps, package_dir)
    if foreign:
        raise ImportError(
            "corral cannot load: this process already holds another build of llama.cpp ("
            + ", ".join(foreign)
            + "), whose libraries share the names of this source build's; install corral's prebuilt"
            + " wheel, or use the two in separate processes"
        )
