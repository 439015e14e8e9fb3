"""Checks every ELF file under DIR the way a machine with glibc 2.31 (manylinux_2_31) would:
it may need only the system libraries of the manylinux set and corral's own, and only symbol
versions that glibc 2.31 and libstdc++ 10 provide. Never libssl or libcrypto.

    python3 scripts/dist/check-elf.py DIR
"""

import re
import subprocess
import sys
from pathlib import Path

SYSTEM = {"libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1", "libgcc_s.so.1", "libstdc++.so.6", "ld-linux-x86-64.so.2"}
OWN = re.compile(r"^libcorral(-[a-z-]+)?\.so\.\d+$")
# The newest symbol version of each kind that Debian bullseye (glibc 2.31, GCC 10) provides.
NEWEST = {"GLIBC": (2, 31), "GLIBCXX": (3, 4, 28), "CXXABI": (1, 3, 12), "GCC": (10, 0)}


def is_elf(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == b"\x7fELF"


def main() -> int:
    problems = []
    checked = 0
    for path in sorted(Path(sys.argv[1]).rglob("*")):
        if not path.is_file() or path.is_symlink() or not is_elf(path):
            continue
        checked += 1
        dynamic = subprocess.run(["readelf", "-dW", str(path)], capture_output=True, text=True, check=True).stdout
        for needed in re.findall(r"\(NEEDED\).*\[(.+)\]", dynamic):
            if needed not in SYSTEM and not OWN.match(needed):
                problems.append(f"{path}: needs {needed}")
        versions = subprocess.run(["readelf", "-VW", str(path)], capture_output=True, text=True, check=True).stdout
        for kind, number in re.findall(r"Name: (GLIBC|GLIBCXX|CXXABI|GCC)_([0-9.]+)", versions):
            if tuple(int(n) for n in number.split(".")) > NEWEST[kind]:
                problems.append(f"{path}: needs {kind}_{number}")
    for problem in sorted(set(problems)):
        print(problem, file=sys.stderr)
    print(f"{checked} ELF files checked: {'ok' if not problems else f'{len(set(problems))} problems'}", file=sys.stderr)
    return 1 if problems or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
