"""Stubs match the compiled module; the examples run."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import corral
from conftest import REPO

EXAMPLES = REPO / "examples" / "python"


def test_stubs_match_the_native_module() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "corral._native"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("target", [["-p", "corral"], [str(EXAMPLES)]], ids=["package", "examples"])
def test_strict_type_check(target: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", *target],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_typed_package() -> None:
    package = Path(corral.__file__).parent
    assert (package / "py.typed").is_file()
    assert (package / "_native.pyi").is_file()


def _run_example(name: str, model_path: Path, *args: str) -> str:
    env = dict(os.environ, PYTHONWARNINGS="error")
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), str(model_path), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.timeout(180)
def test_chat_example(model_path: Path) -> None:
    out = _run_example("chat.py", model_path, "--threads", "1", "--max-tokens", "12", "--prompt", "Hi!", "--prompt", "What did I say?")
    assert out.count("assistant>") == 2


@pytest.mark.timeout(180)
def test_async_chat_example(model_path: Path) -> None:
    out = _run_example("async_chat.py", model_path, "--threads", "1", "--max-tokens", "12")
    assert "gathered 3 answers" in out


def _prebuilt(package: Path) -> bool:
    """The prebuilt wheel renames corral's llama.cpp libraries (scripts/dist/rename-runtime.sh)."""
    return (package / "libcorral-llama.so.0").is_file()


def test_llama_cpp_and_cpu_variants_ship_in_the_package() -> None:
    package = Path(corral.__file__).parent
    prefix = "libcorral-" if _prebuilt(package) else "lib"
    for lib in (f"{prefix}llama.so.0", f"{prefix}ggml.so.0", f"{prefix}ggml-base.so.0", "libggml-cpu-x64.so"):
        assert (package / lib).is_file(), f"{lib} missing from the installed package"
    variants = sorted(p.name for p in package.glob("libggml-cpu-*.so"))
    assert len(variants) >= 3, variants
    assert f"libggml-cpu-{corral.cpu_variant()}.so" in variants


def test_another_llama_cpp_in_the_process_is_a_clear_import_error(tmp_path: Path) -> None:
    # Another package's copy of llama.cpp (here: corral's own libraries from another folder,
    # as llama-cpp-python ships them under the same names) loaded before corral. The prebuilt
    # wheel's libraries have their own names: scripts/dist/test.sh runs the two side by side.
    package = Path(corral.__file__).parent
    if _prebuilt(package):
        pytest.skip("the prebuilt wheel's libraries do not share llama.cpp's names")
    for lib in ("libggml-base.so.0", "libggml.so.0"):
        (tmp_path / lib).write_bytes((package / lib).read_bytes())
    script = (
        "import ctypes, sys\n"
        f"ctypes.CDLL({str(tmp_path / 'libggml-base.so.0')!r}, mode=ctypes.RTLD_GLOBAL)\n"
        "try:\n"
        "    import corral\n"
        "except ImportError as e:\n"
        "    print('refused:', e)\n"
        "    sys.exit(0)\n"
        "sys.exit('imported')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "another build of llama.cpp" in done.stdout and "libggml-base.so.0" in done.stdout, done.stdout
    # And alone, corral imports and runs.
    alone = subprocess.run([sys.executable, "-c", "import corral; print(corral.cpu_variant())"], capture_output=True, text=True, timeout=120)
    assert alone.returncode == 0 and alone.stdout.strip(), alone.stderr
