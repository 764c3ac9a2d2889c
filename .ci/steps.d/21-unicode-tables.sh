#!/usr/bin/env bash
# Checks that include/llmfast/detail/unicode_tables.hpp is what scripts/gen_unicode_tables.py makes
# from Debian's unicode-data package, when the installed UCD is the version the header was made from
# (another version legitimately differs; the header's comment names its version).
set -euo pipefail
cd "$(dirname "$0")/../.."
ucd=/usr/share/unicode
header=include/llmfast/detail/unicode_tables.hpp
wanted=$(sed -n 's/.*Unicode Character Database \([0-9.]*\).*/\1/p' "$header" | head -1)
if [ ! -f "$ucd/UnicodeData.txt" ]; then
  echo "21-unicode-tables: $ucd/UnicodeData.txt absent (package unicode-data); check skipped"
  exit 0
fi
if ! grep -q "Version $wanted of the Unicode Standard" "$ucd/ReadMe.txt" 2>/dev/null; then
  echo "21-unicode-tables: installed UCD is not version $wanted; check skipped"
  exit 0
fi
python3 scripts/gen_unicode_tables.py --check "$ucd"
