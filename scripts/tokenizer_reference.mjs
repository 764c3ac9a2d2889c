#!/usr/bin/env node
// Generates the reference token ids the BPE tokenizer tests compare against, with the npm `tiktoken`
// package (OpenAI's tiktoken compiled to WASM).
//
// usage: node scripts/tokenizer_reference.mjs <node_modules dir> <output.json>
//
// Output: {"tiktoken_version": "...", "cases": [{"text": "...", "cl100k_base": [...], "o200k_base": [...],
//          "cl100k_base_special": [...], "o200k_base_special": [...]}, ...]}
// "*_special" is encode(text, "all") (special-token strings recognized); the others encode_ordinary.
// "pieces": {"cl100k": [...], "cl100k_trailing_space": [...], "o200k": [...]}, the pre-tokenization
// of the text by each split pattern, run as a JavaScript regex (see splitPatterns).
import { createRequire } from "node:module";
import { writeFileSync, readFileSync } from "node:fs";
import path from "node:path";

const [modulesDir, output] = process.argv.slice(2);
if (!modulesDir || !output) {
  console.error("usage: node scripts/tokenizer_reference.mjs <node_modules dir> <output.json>");
  process.exit(2);
}
const require = createRequire(path.resolve(modulesDir, "noop.js"));
const tiktoken = require("tiktoken");
const version = JSON.parse(readFileSync(path.join(modulesDir, "tiktoken", "package.json"), "utf8")).version;

// A varied, hand-written corpus: each line exercises a branch of the split patterns.
const fixed = [
  "", "a", " ", "Hello, world!", "Hello world", "hello   world", "  leading spaces", "trailing spaces   ",
  "The quick brown fox jumps over the lazy dog. It's 3:45pm and I'm late; they'll say we've won, you'd agree.",
  "I'M SHOUTING, DON'T YOU SEE? WE'LL WIN. THEY'RE HERE. I'D NOT. YOU'VE GOT IT.",
  "'s 't 're 've 'm 'll 'd 'S 'T 'RE 'Ve 'M 'LL 'D 'x 'sam ''s ' s", "rock'n'roll o'clock y'all", "x'ſ 'ſ",
  "def fibonacci(n: int) -> int:\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
  "#include <vector>\nint main() {\n\tstd::vector<int> v{1, 2, 3};\n\treturn v.size() > 2 ? 0 : 1;\n}\n",
  "for (let i = 0; i < 10; i++) { console.log(`${i}: ${i ** 2}`); } // comment /* block */",
  "SELECT id, name FROM users WHERE created_at >= '2024-01-01' ORDER BY id DESC LIMIT 100;",
  "https://example.com/path/to/page?query=1&x=y#frag and /usr/local/bin//x ///a",
  "人工智能正在改变我们的生活方式。大型语言模型可以理解和生成自然语言文本，例如回答问题、翻译和写作。",
  "中文，标点！“引号”（括号）【方括号】……——《书名》", "今日は良い天気ですね。東京タワーに行きましょう！カタカナとひらがな。",
  "한국어 텍스트도 테스트합니다. 안녕하세요!", "Привет, мир! Это тест. ЗАГЛАВНЫЕ буквы.", "Γειά σου Κόσμε ΑΒΓ αβγ",
  "مرحبا بالعالم ١٢٣٤٥ ٦٧٨", "हिन्दी में परीक्षण, नमस्ते दुनिया", "ภาษาไทยไม่มีช่องว่าง", "Ελληνικά and ǅungla ǈ ǋ Title",
  "emoji 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🇺🇸 ❤️ ✨🚀", "café naïve résumé coöperate Ångström ß SS ẞ", "e\u0301 a\u0308\u0301 \u0301\u0301x ' \u0301",
  "0 1 12 123 1234 12345 123456 1234567 3.14159 -42 1e10 1,000,000 ٣٤٥٦ Ⅻ ½ ²³", "phone: +1 (555) 123-4567, zip 90210",
  "   ", "\n", "\n\n\n", "\r\n", "a\r\nb\r\n\r\nc", "line1\nline2\n\nline4\n", "tabs\t\there\t", "\t\t\n\t x",
  "a\n  ", "a\n  b", "a  \n  ", "x \n\n \t", "end with newline\n", "spaces    \n    indented", "a\u00a0b\u3000c\u2028d\u0085e",
  "<|endoftext|>", "text <|endoftext|> more <|endofprompt|> and <|fim_prefix|><|fim_middle|><|fim_suffix|>",
  "<|endoftext", "<|endoftext|><|endoftext|>", "almost <|endoftext |> not special",
  "HELLOworld helloWORLD HeLLo McDonald's iPhone eBay XMLHttpRequest camelCaseWord snake_case_word",
  "!!!???...;;;:::---___===+++***&&&^^^%%%$$$###@@@", " !x ?y .z", "a/b/c/ //x\n/", "...\n\n", "?!\r\n\r\nx",
  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  "Supercalifragilisticexpialidocious pneumonoultramicroscopicsilicovolcanoconiosis antidisestablishmentarianism",
  "0".repeat(50), " ".repeat(300) + "x", "\n".repeat(40) + "y", "ab".repeat(300), "😀".repeat(50), "中".repeat(200),
  "dGhpcyBpcyBhIGJhc2U2NCBibG9iIHRoYXQgaXMgcXVpdGUgbG9uZyBhbmQgaGFzIG5vIHNwYWNlcyBhdCBhbGwgYW5kIGp1c3Qga2VlcHMgZ29pbmc=",
  "Mixed 中文 and English, 日本語も。 Numbers 2024年3月15日. Emoji 🎉!",
];

// Random strings over characters from every class the patterns distinguish (fixed seed).
const pool = [
  "a", "b", "z", "A", "Z", "s", "S", "t", "T", "l", "L", "e", "r", "v", "m", "d", "'", "'", " ", " ", " ", "\n", "\r", "\t",
  "\u000b", "\f", "0", "7", "9", "!", ".", ",", "/", "-", "_", "é", "É", "ß", "\u0301", "\u0308", "ǅ", "ʰ", "ª", "中", "文",
  "ア", "か", "한", "Ж", "ж", "Σ", "٣", "Ⅻ", "½", "\u00a0", "\u3000", "\u2028", "\u0085", "😀", "👍", "\u200d", "ſ", "<|", "|>",
  "्", "ा", "क", "\u2009", "€", "™",
];
let seed = 0x2545f491;
const random = () => {
  seed ^= seed << 13; seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5; seed >>>= 0;
  return seed / 4294967296;
};
const randomCases = [];
for (let i = 0; i < 3000; ++i) {
  const length = 1 + Math.floor(random() * 24);
  let text = "";
  for (let k = 0; k < length; ++k) text += pool[Math.floor(random() * pool.length)];
  randomCases.push(text);
}

// The split patterns as JavaScript regexes, for a piece-level reference of the hand-written
// splitters (including SplitPattern::Cl100kTrailingSpace, Python tiktoken >= 0.7's cl100k pattern,
// which the npm package does not use). Rewritten for JS without changing what they match:
//   - \s is spelled out as Unicode White_Space (the regex crate's \s); JS's \s differs (U+FEFF, U+0085);
//   - (?i:'s|...) becomes explicit case classes; simple case folding adds U+017F (long s) to s;
//   - possessive quantifiers are dropped: in these patterns nothing after them could match what
//     backtracking would give back, so they match the same (\s++$ is \s+$).
const S = "[\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";
const NS = S.replace("[", "[^");
const notSLN = "[^\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\p{L}\\p{N}]";
const C = "'(?:[sS\\u017f]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD])";
const U = "[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]";
const W = "[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]";
const splitPatterns = {
  cl100k: `${C}|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?${notSLN}+[\\r\\n]*|${S}*[\\r\\n]+|${S}+(?!${NS})|${S}+`,
  cl100k_trailing_space: `${C}|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?${notSLN}+[\\r\\n]*|${S}+$|${S}*[\\r\\n]|${S}+(?!${NS})|${S}`,
  o200k: `[^\\r\\n\\p{L}\\p{N}]?${U}*${W}+(?:${C})?|[^\\r\\n\\p{L}\\p{N}]?${U}+${W}*(?:${C})?|\\p{N}{1,3}| ?${notSLN}+[\\r\\n/]*|${S}*[\\r\\n]+|${S}+(?!${NS})|${S}+`,
};
const splitRegexes = Object.fromEntries(Object.entries(splitPatterns).map(([name, source]) => [name, new RegExp(source, "gu")]));
const split = (regex, text) => {
  const pieces = [];
  let joined = "";
  for (const match of text.matchAll(regex)) {
    if (match.index !== joined.length) throw new Error(`split gap in ${JSON.stringify(text)}`);
    pieces.push(match[0]);
    joined += match[0];
  }
  if (joined !== text) throw new Error(`split does not cover ${JSON.stringify(text)}`);
  return pieces;
};

const encodings = ["cl100k_base", "o200k_base"];
const encoders = Object.fromEntries(encodings.map((name) => [name, tiktoken.get_encoding(name)]));
const cases = [...fixed, ...randomCases].map((text) => {
  const entry = { text };
  for (const name of encodings) {
    entry[name] = Array.from(encoders[name].encode_ordinary(text));
    entry[`${name}_special`] = Array.from(encoders[name].encode(text, "all"));
  }
  entry.pieces = Object.fromEntries(Object.entries(splitRegexes).map(([name, regex]) => [name, split(regex, text)]));
  return entry;
});
for (const encoder of Object.values(encoders)) encoder.free();
writeFileSync(output, JSON.stringify({ tiktoken_version: version, cases }));
console.log(`wrote ${cases.length} reference cases (tiktoken ${version}) to ${output}`);
