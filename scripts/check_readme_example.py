#!/usr/bin/env python3
"""Checks that README.md's opening C++ example is the block examples/overview.cpp compiles.

The block between `// ---- README: begin ----` and `// ---- README: end ----` in examples/overview.cpp
must equal the end of README's first ```cpp fence, line for line (the fence may open with the
`#include` and the declaration of the user's model function, which overview.cpp defines as a stand-in). CI runs this, so the README never shows code
that does not compile. Exit 0 when they match, 1 (with a diff) when they do not.
"""
import difflib
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
source = (ROOT / "examples" / "overview.cpp").read_text(encoding="utf-8")
readme = (ROOT / "README.md").read_text(encoding="utf-8")

block = re.search(r"^// ---- README: begin ----\n(.*?)^// ---- README: end ----$", source, re.S | re.M)
fence = re.search(r"^```cpp\n(.*?)^```$", readme, re.S | re.M)
if not block or not fence:
    sys.exit("check_readme_example: marker block in examples/overview.cpp or ```cpp fence in README.md not found")
want, have = block.group(1).splitlines(), fence.group(1).splitlines()
if have[-len(want):] != want:
    sys.stdout.writelines(line + "\n" for line in difflib.unified_diff(
        have, want, "README.md", "examples/overview.cpp", lineterm=""))
    sys.exit(1)
print("README's opening example is examples/overview.cpp's block")
