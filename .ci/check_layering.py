#!/usr/bin/env python3
"""Fails on any #include in a leaf that crosses the layering (ARCHITECTURE.md, "Layering").

    base     -> the C++ standard library only
    protocol -> base
    config   -> protocol, base, and toml11 (the parser it wraps)
    pools    -> base
    src/     -> everything (not checked here)

A project header is spelled from the repository root ("protocol/framing.hpp"); its first directory
must be the leaf itself or one it may use. An angle-bracket include must be a header of the C++
standard library (or toml11's, in config/). A path with ".." in it is refused outright. CMake
enforces the same project graph when compiling (each leaf sees only its allowed directories,
CMakeLists.txt "layering"); this check also covers third-party headers and headers no .cpp
includes yet. Prints `file:line: include "x" crosses the layering (pools may include: base)` per
offence; exits 1 if there was any. Standard library only; run from anywhere.
"""
import pathlib
import re
import sys

ALLOWED = {
    "base": [],
    "protocol": ["base"],
    "config": ["protocol", "base"],
    "pools": ["base"],
}
# Third-party headers a leaf may include besides the standard library: toml11 in config/ only.
THIRD_PARTY = {"config": re.compile(r"^toml(\.hpp$|/)")}

# The C++20 standard library headers (with the C library's <cxxx> forms), as GCC 12 ships them.
STANDARD = set(
    """
    algorithm any array atomic barrier bit bitset charconv chrono codecvt compare complex concepts
    condition_variable coroutine deque exception execution filesystem format forward_list fstream
    functional future initializer_list iomanip ios iosfwd iostream istream iterator latch limits
    list locale map memory memory_resource mutex new numbers numeric optional ostream queue random
    ranges ratio regex scoped_allocator semaphore set shared_mutex source_location span sstream
    stack stdexcept stop_token streambuf string string_view syncstream system_error thread tuple
    type_traits typeindex typeinfo unordered_map unordered_set utility valarray variant vector
    version
    cassert cctype cerrno cfenv cfloat cinttypes climits clocale cmath csetjmp csignal cstdarg
    cstddef cstdint cstdio cstdlib cstring ctime cuchar cwchar cwctype
    """.split()
)

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')
SOURCE_SUFFIXES = {".hpp", ".cpp", ".h", ".cc", ".hh", ".ipp", ".inc"}


def may_include(leaf):
    allowed = ALLOWED[leaf] + (["toml11"] if leaf in THIRD_PARTY else [])
    return ", ".join(allowed + ["the C++ standard library"])


def offence(leaf, kind, name):
    """Why `name` may not be included from `leaf`, or None if it may."""
    if kind == "<":
        if name in STANDARD:
            return None
        if leaf in THIRD_PARTY and THIRD_PARTY[leaf].search(name):
            return None
        return "crosses the layering"
    parts = pathlib.PurePosixPath(name).parts
    if ".." in parts:
        return "crosses the layering"  # out of its directory, whatever it reaches
    if len(parts) == 1:
        return None  # beside the including file: the same leaf
    if parts[0] == leaf or parts[0] in ALLOWED[leaf]:
        return None
    return "crosses the layering"


def check(root):
    failures = 0
    for leaf in ALLOWED:
        directory = root / leaf
        if not directory.is_dir():
            continue
        for path in sorted(directory.rglob("*")):
            if path.suffix not in SOURCE_SUFFIXES or not path.is_file():
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            for number, line in enumerate(text.splitlines(), start=1):
                m = INCLUDE.match(line)
                if not m:
                    continue
                kind, name = m.group(1), m.group(2)
                why = offence(leaf, kind, name)
                if why is None:
                    continue
                shown = f"<{name}>" if kind == "<" else f'"{name}"'
                rel = path.relative_to(root).as_posix()
                print(f"{rel}:{number}: include {shown} {why} ({leaf} may include: "
                      f"{may_include(leaf)})")
                failures += 1
    return failures


def main():
    root = pathlib.Path(__file__).resolve().parent.parent
    failures = check(root)
    if failures:
        print(f"layering: {failures} include(s) cross the layering; the allowed graph is in "
              "ARCHITECTURE.md, \"Layering\"", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
