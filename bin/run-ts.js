#!/usr/bin/env node
// Runs a TypeScript entry point (benchmarks, scripts) through tsx: `node bin/run-ts.js path/to/file.ts [args]`.
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { register } from "tsx/esm/api";

register();
const [entry, ...rest] = process.argv.slice(2);
if (!entry) {
  process.stderr.write("usage: node bin/run-ts.js <file.ts> [args]\n");
  process.exit(2);
}
process.argv = [process.argv[0], entry, ...rest];
await import(pathToFileURL(resolve(entry)).href);
