#!/usr/bin/env node
// Set-up for a fresh machine, run by `npm run quickstart` and `npm test`:
// 1. npm packages (npm ci when node_modules is missing or older than the lock file);
// 2. Debian's python3-torch + libopenblas0-pthread when the configured Python cannot import torch;
// 3. with --browser (npm test): Debian's chromium, for the browser tests of the HTML reports.
// Uses only Node's standard library, since it runs before the packages exist.
import { spawnSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const log = (message) => process.stderr.write(`setup: ${message}\n`);

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { stdio: "inherit", cwd: root, ...options });
  if (result.error) throw result.error;
  return result.status ?? 1;
}

function npmPackages() {
  const marker = join(root, "node_modules", ".package-lock.json");
  const lock = join(root, "package-lock.json");
  if (existsSync(marker) && (!existsSync(lock) || statSync(marker).mtimeMs >= statSync(lock).mtimeMs)) return;
  log("installing npm packages");
  if (run("npm", [existsSync(lock) ? "ci" : "install", "--no-audit", "--no-fund"]) !== 0) {
    log("npm install failed");
    process.exit(1);
  }
}

function canImportTorch(python) {
  const result = spawnSync(python, ["-c", "import torch"], { stdio: "ignore" });
  return result.status === 0;
}

function apt(args) {
  const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  return isRoot ? run("apt-get", args, { env }) : run("sudo", ["-n", "apt-get", ...args], { env });
}

function chromium() {
  if (existsSync("/usr/bin/chromium")) return;
  log("installing Debian's chromium (the browser tests of the eval reports)");
  if (apt(["update", "-qq"]) !== 0 || apt(["install", "-y", "-qq", "--no-install-recommends", "chromium"]) !== 0) {
    log("could not install chromium; as root run: apt-get install --no-install-recommends chromium");
    process.exit(1);
  }
}

function torch() {
  const python = process.env.AVOCADO_PYTHON || "/usr/bin/python3";
  if (canImportTorch(python)) return;
  if (process.env.AVOCADO_PYTHON) {
    log(`AVOCADO_PYTHON=${python} cannot import torch; install torch for it, or unset AVOCADO_PYTHON to use Debian's`);
    process.exit(1);
  }
  log("installing Debian's python3-torch and libopenblas0-pthread (the trainer's PyTorch)");
  if (
    apt(["update", "-qq"]) !== 0 ||
    apt(["install", "-y", "-qq", "python3-torch", "libopenblas0-pthread"]) !== 0 ||
    !canImportTorch(python)
  ) {
    log(`could not install torch for ${python}; as root run: apt-get install python3-torch libopenblas0-pthread`);
    process.exit(1);
  }
}

npmPackages();
torch();
if (process.argv.includes("--browser")) chromium();
