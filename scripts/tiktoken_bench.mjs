#!/usr/bin/env node
// The baseline process of benchmarks/tokenizer_bench.cpp: times the npm `tiktoken` package (OpenAI's
// tiktoken compiled to WASM) encoding a text, on request, so the C++ benchmark can alternate rounds
// of its own and of this process on the same text.
//
// usage: node scripts/tiktoken_bench.mjs <node_modules dir>
// Reads lines "<encoding> <text file> <repetitions>" on stdin; for each, encodes the file's text
// (encode_ordinary) that many times and writes "<seconds> <tokens per encode>" on stdout. The
// encoders are loaded once, before "ready" is printed, so loading is not timed.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import path from "node:path";
import readline from "node:readline";

const modulesDir = process.argv[2];
if (!modulesDir) {
  console.error("usage: node scripts/tiktoken_bench.mjs <node_modules dir>");
  process.exit(2);
}
const require = createRequire(path.resolve(modulesDir, "noop.js"));
const tiktoken = require("tiktoken");
const encoders = { cl100k_base: tiktoken.get_encoding("cl100k_base"), o200k_base: tiktoken.get_encoding("o200k_base") };
const texts = new Map();
console.log("ready");

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  const [name, file, repetitionsText] = line.trim().split(" ");
  if (!name) continue;
  const encoder = encoders[name];
  if (!texts.has(file)) texts.set(file, readFileSync(file, "utf8"));
  const text = texts.get(file);
  const repetitions = Number(repetitionsText);
  let tokens = 0;
  const start = process.hrtime.bigint();
  for (let i = 0; i < repetitions; ++i) tokens = encoder.encode_ordinary(text).length;
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  console.log(`${seconds} ${tokens}`);
}
for (const encoder of Object.values(encoders)) encoder.free();
