"""corral and another llama.cpp in one process, in either order (scripts/dist/test.sh).

llama-cpp-python ships libllama.so.0 and libggml-base.so.0 under upstream's names and loads
them with ctypes; corral's copies carry their own names, so neither binds to the other's.
The other llama.cpp here is /opt/foreign-llama, loaded the same way.

    python coexist.py MODEL corral-first|foreign-first
"""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

FOREIGN = Path("/opt/foreign-llama")


def load_foreign() -> ctypes.CDLL:
    """As llama-cpp-python does: ctypes (RTLD_LOCAL) opens libllama, which finds its ggml
    beside it through its run path."""
    llama = ctypes.CDLL(str(FOREIGN / "libllama.so.0"))
    llama.llama_print_system_info.restype = ctypes.c_char_p
    ggml = ctypes.CDLL(str(FOREIGN / "libggml.so.0"))
    ggml.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]
    ggml.ggml_backend_load_all_from_path(str(FOREIGN).encode())
    llama.llama_backend_init()
    return llama


def mapped(name_part: str) -> set[str]:
    with open("/proc/self/maps") as maps:
        return {line.split()[-1] for line in maps if name_part in line and "/" in line}


def corral_reply(model_path: str) -> str:
    import corral

    with corral.Model(model_path, context_length=512) as model:
        out = model.chat([{"role": "user", "content": "Say hello."}], max_tokens=8, temperature=0)
        assert out.usage.completion_tokens > 0, out
        return out.text


def main() -> None:
    model_path, order = sys.argv[1], sys.argv[2]
    if order == "corral-first":
        text = corral_reply(model_path)
        foreign = load_foreign()
    else:
        foreign = load_foreign()
        text = corral_reply(model_path)
    info = foreign.llama_print_system_info().decode()
    assert "CPU" in info, info
    import corral

    package = Path(corral.__file__).parent
    ggml_base = mapped("ggml-base")
    # Each llama.cpp runs on its own ggml: corral's renamed copy and the foreign one.
    assert str(package / "libcorral-ggml-base.so.0") in ggml_base, ggml_base
    assert str(FOREIGN / "libggml-base.so.0") in ggml_base, ggml_base
    assert not any(str(package) in path for path in mapped("libllama.so")), "corral loaded an upstream-named libllama"
    # corral still generates after the other llama.cpp is in the process.
    again = corral_reply(model_path)
    print(f"{order}: corral said {text.strip()!r} then {again.strip()!r}; the other llama.cpp reports {info.split('|')[0].strip()!r}")


if __name__ == "__main__":
    main()
