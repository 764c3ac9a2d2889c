#!/usr/bin/env python3
"""Generates include/llmfast/detail/unicode_tables.hpp: the Unicode character classes llmfast needs,
read through detail/unicode.hpp.

Input: Debian's `unicode-data` package (UnicodeData.txt for the general category, PropList.txt for
White_Space, i.e. regex `\\s`, Scripts.txt and ScriptExtensions.txt for the CJK scripts).

Output, two two-stage lookup tables:
  1. the category table (the BPE pre-tokenizer, llmfast/bpe_tokenizer.hpp, splits text with it the way
     tiktoken's patterns do), one 4-bit class per code point:

    0 other   1 Lu   2 Ll   3 Lt   4 Lm   5 Lo   6 M (Mn, Mc, Me)   7 N (Nd, Nl, No)
    + 8 when the code point is White_Space

  2. the CJK script table (the estimator, the compressor and the embedder tell CJK text apart with it),
     one byte per code point below the last CJK code point: the low 3 bits are the script

    0 none   1 Han   2 Hiragana   3 Katakana   4 Hangul   5 Bopomofo
    6 kana-shared: Common or Inherited characters used only with kana (Script_Extensions = Hira Kana,
      e.g. U+30FC KATAKANA-HIRAGANA PROLONGED SOUND MARK)

     and bits 4-6 the category class of table 1 (so "a Han ideograph", Han and Lo, is one lookup).

Usage: scripts/gen_unicode_tables.py [UNICODE_DIR] > include/llmfast/detail/unicode_tables.hpp
       scripts/gen_unicode_tables.py --check [UNICODE_DIR]   (exit 1 if the checked-in header differs)
       (UNICODE_DIR defaults to /usr/share/unicode)
"""
import os
import re
import sys

BLOCK = 128  # code points per stage-2 block (a power of two)
SCRIPTS = {"Han": 1, "Hiragana": 2, "Katakana": 3, "Hangul": 4, "Bopomofo": 5}
KANA_SHARED = 6
SCRIPT_NAMES = ["none", "han", "hiragana", "katakana", "hangul", "bopomofo", "kana_shared"]
CATEGORY = {"Lu": 1, "Ll": 2, "Lt": 3, "Lm": 4, "Lo": 5, "Mn": 6, "Mc": 6, "Me": 6, "Nd": 7, "Nl": 7, "No": 7}
WHITE_SPACE = 8
MAX_CP = 0x110000


def read_version(unicode_dir):
    readme = os.path.join(unicode_dir, "ReadMe.txt")
    try:
        with open(readme, encoding="utf-8") as f:
            match = re.search(r"Version (\d+\.\d+\.\d+)", f.read())
            if match:
                return match.group(1)
    except OSError:
        pass
    return "unknown"


def read_property(unicode_dir, name):
    """(range of code points, value) for each data line of a UCD property file."""
    with open(os.path.join(unicode_dir, name), encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            cps, value = [part.strip() for part in line.split(";")]
            lo, _, hi = cps.partition("..")
            yield range(int(lo, 16), int(hi or lo, 16) + 1), value


def main():
    args = sys.argv[1:]
    check = "--check" in args
    args = [a for a in args if a != "--check"]
    unicode_dir = args[0] if args else "/usr/share/unicode"
    if check:
        import io
        header = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "include", "llmfast", "detail",
                              "unicode_tables.hpp")
        buffer = io.StringIO()
        generate(unicode_dir, buffer)
        with open(header, encoding="utf-8") as f:
            if f.read() != buffer.getvalue():
                sys.exit("unicode_tables.hpp is stale or edited: regenerate it with scripts/gen_unicode_tables.py")
        print("unicode_tables.hpp matches the generator", file=sys.stderr)
        return
    generate(unicode_dir, sys.stdout)


def generate(unicode_dir, out):
    classes = bytearray(MAX_CP)
    range_start = None
    with open(os.path.join(unicode_dir, "UnicodeData.txt"), encoding="utf-8") as f:
        for line in f:
            fields = line.rstrip("\n").split(";")
            cp = int(fields[0], 16)
            name, category = fields[1], fields[2]
            value = CATEGORY.get(category, 0)
            if name.endswith(", First>"):
                range_start = cp
                continue
            if name.endswith(", Last>"):
                for c in range(range_start, cp + 1):
                    classes[c] = value
                range_start = None
                continue
            classes[cp] = value
    white_space_count = 0
    with open(os.path.join(unicode_dir, "PropList.txt"), encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            cps, prop = [part.strip() for part in line.split(";")]
            if prop != "White_Space":
                continue
            lo, _, hi = cps.partition("..")
            for c in range(int(lo, 16), int(hi or lo, 16) + 1):
                classes[c] |= WHITE_SPACE
                white_space_count += 1
    if white_space_count == 0:
        sys.exit("PropList.txt has no White_Space entries")

    scripts = bytearray(MAX_CP)
    for cps, value in read_property(unicode_dir, "Scripts.txt"):
        if value in SCRIPTS:
            for c in cps:
                scripts[c] = SCRIPTS[value]
    kana_shared = 0
    for cps, value in read_property(unicode_dir, "ScriptExtensions.txt"):
        if sorted(value.split()) == ["Hira", "Kana"]:
            for c in cps:
                if scripts[c] == 0:
                    scripts[c] = KANA_SHARED
                    kana_shared += 1
    if scripts[0x4E00] != SCRIPTS["Han"] or kana_shared == 0:
        sys.exit("Scripts.txt / ScriptExtensions.txt: no Han or no kana-shared entries")
    # The run of Han ideographs (script Han, category Lo) around U+4E00, the block of the common
    # characters: detail/unicode.hpp tests it with one comparison before the table lookup.
    def han_ideograph(c):
        return scripts[c] == SCRIPTS["Han"] and classes[c] & 7 == CATEGORY["Lo"]
    han_first = han_last = 0x4E00
    while han_ideograph(han_first - 1):
        han_first -= 1
    while han_ideograph(han_last + 1):
        han_last += 1
    script_limit = (max(c for c in range(MAX_CP) if scripts[c]) // BLOCK + 1) * BLOCK
    script_blocks = {}
    script_block_list = []
    script_stage1 = []
    for start in range(0, script_limit, BLOCK):
        chunk = bytes(scripts[c] | ((classes[c] & 7) << 4) if scripts[c] else 0 for c in range(start, start + BLOCK))
        if chunk not in script_blocks:
            script_blocks[chunk] = len(script_block_list)
            script_block_list.append(chunk)
        script_stage1.append(script_blocks[chunk])
    if len(script_block_list) > 0xFF:
        sys.exit("too many script blocks for uint8 indices")

    # Two stages: stage1[cp / BLOCK] names a deduplicated block; each block packs two 4-bit classes
    # per byte (low nibble = even code point).
    blocks = {}
    block_list = []
    stage1 = []
    for start in range(0, MAX_CP, BLOCK):
        chunk = bytes(classes[start + i] | (classes[start + i + 1] << 4) for i in range(0, BLOCK, 2))
        if chunk not in blocks:
            blocks[chunk] = len(block_list)
            block_list.append(chunk)
        stage1.append(blocks[chunk])
    if len(block_list) > 0xFFFF:
        sys.exit("too many blocks for uint16 indices")

    version = read_version(unicode_dir)
    out.write(f"""// llmfast/detail/unicode_tables.hpp — GENERATED by scripts/gen_unicode_tables.py; do not edit.
//
// Character classes, from the Unicode Character Database {version} (Debian package unicode-data:
// UnicodeData.txt, PropList.txt, Scripts.txt, ScriptExtensions.txt). Read them through
// detail/unicode.hpp, not directly.
//   unicode_stage1/2: one 4-bit class per code point (the BPE pre-tokenizer's categories):
//     0 other, 1 Lu, 2 Ll, 3 Lt, 4 Lm, 5 Lo, 6 M (Mn Mc Me), 7 N (Nd Nl No); +8 when White_Space.
//   unicode_script_stage1/2: one byte per code point below unicode_script_limit (0 above): low 3 bits
//     the CJK script (unicode_script_* below; kana_shared = Common or Inherited with
//     Script_Extensions = Hira Kana), bits 4-6 the category class (0-7 as above).
// Regenerate: scripts/gen_unicode_tables.py /usr/share/unicode > include/llmfast/detail/unicode_tables.hpp
//
// Unicode data licence notice:
// COPYRIGHT AND PERMISSION NOTICE (Unicode-3.0 / Unicode Data Files and Software License)
// Copyright (c) 1991-2022 Unicode, Inc. All rights reserved.
// Distributed under the Terms of Use in https://www.unicode.org/copyright.html.
//
// Permission is hereby granted, free of charge, to any person obtaining a copy of the Unicode data
// files and any associated documentation (the "Data Files") or Unicode software and any associated
// documentation (the "Software") to deal in the Data Files or Software without restriction,
// including without limitation the rights to use, copy, modify, merge, publish, distribute, and/or
// sell copies of the Data Files or Software, and to permit persons to whom the Data Files or
// Software are furnished to do so, provided that either (a) this copyright and permission notice
// appear with all copies of the Data Files or Software, or (b) this copyright and permission notice
// appear in associated Documentation.
//
// THE DATA FILES AND SOFTWARE ARE PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
// IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR
// PURPOSE AND NONINFRINGEMENT OF THIRD PARTY RIGHTS. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR
// HOLDERS INCLUDED IN THIS NOTICE BE LIABLE FOR ANY CLAIM, OR ANY SPECIAL INDIRECT OR CONSEQUENTIAL
// DAMAGES, OR ANY DAMAGES WHATSOEVER RESULTING FROM LOSS OF USE, DATA OR PROFITS, WHETHER IN AN
// ACTION OF CONTRACT, NEGLIGENCE OR OTHER TORTIOUS ACTION, ARISING OUT OF OR IN CONNECTION WITH THE
// USE OR PERFORMANCE OF THE DATA FILES OR SOFTWARE.
//
// Except as contained in this notice, the name of a copyright holder shall not be used in
// advertising or otherwise to promote the sale, use or other dealings in these Data Files or
// Software without prior written authorization of the copyright holder.
#pragma once

#include <llmfast/version.hpp>

#include <cstdint>

LLMFAST_BEGIN_NAMESPACE
namespace detail {{

inline constexpr char unicode_version[] = "{version}";
inline constexpr unsigned unicode_block_shift = {BLOCK.bit_length() - 1};  // {BLOCK} code points per block

// unicode_stage1[cp >> unicode_block_shift] is the index of cp's block in unicode_stage2.
inline constexpr std::uint16_t unicode_stage1[{len(stage1)}] = {{
""")
    for i in range(0, len(stage1), 24):
        out.write("    " + ",".join(str(v) for v in stage1[i:i + 24]) + ",\n")
    out.write(f"""}};

// unicode_stage2[block * {BLOCK // 2} + (cp % {BLOCK}) / 2]: two classes per byte, the even code point in the
// low nibble.
inline constexpr std::uint8_t unicode_stage2[{len(block_list) * BLOCK // 2}] = {{
""")
    flat = b"".join(block_list)
    for i in range(0, len(flat), 32):
        out.write("    " + ",".join(str(v) for v in flat[i:i + 32]) + ",\n")
    out.write("};\n\n")
    for value, name in enumerate(SCRIPT_NAMES):
        out.write(f"inline constexpr std::uint8_t unicode_script_{name} = {value};\n")
    out.write(f"""
// The script table covers [0, unicode_script_limit); every code point above it has script none (0).
inline constexpr char32_t unicode_script_limit = 0x{script_limit:X};
// The run of Han ideographs (script Han, category Lo) that holds U+4E00: a fast path for common text.
inline constexpr char32_t unicode_han_run_first = 0x{han_first:X};
inline constexpr char32_t unicode_han_run_last = 0x{han_last:X};

// unicode_script_stage1[cp >> unicode_block_shift] is the index of cp's block in unicode_script_stage2.
inline constexpr std::uint8_t unicode_script_stage1[{len(script_stage1)}] = {{
""")
    for i in range(0, len(script_stage1), 48):
        out.write("    " + ",".join(str(v) for v in script_stage1[i:i + 48]) + ",\n")
    out.write(f"""}};

// unicode_script_stage2[block * {BLOCK} + cp % {BLOCK}]: script | category << 4.
inline constexpr std::uint8_t unicode_script_stage2[{len(script_block_list) * BLOCK}] = {{
""")
    flat = b"".join(script_block_list)
    for i in range(0, len(flat), 40):  # 40 a line (the category table has 32): not the same shape
        out.write("    " + ",".join(str(v) for v in flat[i:i + 40]) + ",\n")
    out.write("""};

}  // namespace detail
LLMFAST_END_NAMESPACE
""")
    print(f"blocks: {len(block_list)}, white space: {white_space_count}, script blocks: {len(script_block_list)}, "
          f"kana-shared: {kana_shared}", file=sys.stderr)


if __name__ == "__main__":
    main()
