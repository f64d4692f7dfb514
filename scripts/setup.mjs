#!/usr/bin/env node
// Set-up for a fresh machine, run by `npm run quickstart` and `npm test`:
// 1. npm packages (npm ci when node_modules is missing or older than the lock file);
// 2. Debian's python3-torch + libopenblas0-pthread when the configured Python cannot import torch;
// 3. with --browser (npm test): Debian's chromium, for the browser tests.
// Debian packages go in without their recommends (python3-torch's pull a compiler tool chain and
// dev headers the trainer never uses); apt's log goes to .avocado/setup-apt.log and the terminal
// gets one progress line. Uses only Node's standard library: it runs before the packages exist.
import { spawn, spawnSync } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const started = Date.now();
const log = (message) => process.stderr.write(`setup: ${message}\n`);
const elapsed = () => `${Math.round((Date.now() - started) / 1000)} s`;

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
  const args = [existsSync(lock) ? "ci" : "install", "--no-audit", "--no-fund", "--loglevel=error"];
  if (run("npm", args) !== 0) {
    log("npm install failed");
    process.exit(1);
  }
  log(`npm packages installed (${elapsed()})`);
}

function canImportTorch(python) {
  const result = spawnSync(python, ["-c", "import torch"], { stdio: "ignore" });
  return result.status === 0;
}

// Runs apt-get with its machine-readable status on fd 3 (APT::Status-Fd) and draws one line from it.
function apt(args, label) {
  const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const logDir = join(root, ".avocado");
  mkdirSync(logDir, { recursive: true });
  const logFile = join(logDir, "setup-apt.log");
  const out = createWriteStream(logFile, { flags: "a" });
  const full = ["-o", "APT::Status-Fd=3", ...args];
  const [command, argv] = isRoot ? ["apt-get", full] : ["sudo", ["-n", "apt-get", ...full]];
  return new Promise((resolve) => {
    const child = spawn(command, argv, { cwd: root, env, stdio: ["ignore", "pipe", "pipe", "pipe"] });
    child.stdout.pipe(out, { end: false });
    child.stderr.pipe(out, { end: false });
    const tty = process.stderr.isTTY;
    let last = "";
    createInterface({ input: child.stdio[3] }).on("line", (line) => {
      // dlstatus:<n>:<percent>:<text> while downloading, pmstatus:<pkg>:<percent>:<text> while installing
      const [kind, , percent, ...text] = line.split(":");
      if (kind !== "dlstatus" && kind !== "pmstatus") return;
      const phase = kind === "dlstatus" ? "download" : "install";
      const shown = `${label}: ${phase} ${Math.floor(Number(percent))}% ${text.join(":").slice(0, 50)}`;
      if (tty) process.stderr.write(`\r\x1b[2K${shown}`);
      else if (`${phase}${Math.floor(Number(percent) / 25)}` !== last) log(shown);
      last = `${phase}${Math.floor(Number(percent) / 25)}`;
    });
    child.on("error", (error) => {
      log(`${command}: ${error.message}`);
      resolve(1);
    });
    child.on("close", (code) => {
      if (tty) process.stderr.write("\r\x1b[2K");
      out.end();
      if (code !== 0) log(`apt-get ${args.join(" ")} failed; its log is ${logFile}`);
      resolve(code ?? 1);
    });
  });
}

async function aptInstall(packages, label) {
  if ((await apt(["update", "-qq"], label)) !== 0) return 1;
  return apt(["install", "-y", "-qq", "--no-install-recommends", ...packages], label);
}

async function chromium() {
  if (existsSync("/usr/bin/chromium")) return;
  log("installing Debian's chromium (the browser tests)");
  if ((await aptInstall(["chromium"], "chromium")) !== 0) {
    log("could not install chromium; as root run: apt-get install --no-install-recommends chromium");
    process.exit(1);
  }
  log(`chromium installed (${elapsed()})`);
}

async function torch() {
  const python = process.env.AVOCADO_PYTHON || "/usr/bin/python3";
  if (canImportTorch(python)) return;
  if (process.env.AVOCADO_PYTHON) {
    log(`AVOCADO_PYTHON=${python} cannot import torch; install torch for it, or unset AVOCADO_PYTHON to use Debian's`);
    process.exit(1);
  }
  log("installing Debian's python3-torch and libopenblas0-pthread (the trainer's PyTorch)");
  const packages = ["python3-torch", "libopenblas0-pthread"];
  if ((await aptInstall(packages, "torch")) !== 0 || !canImportTorch(python)) {
    log(
      `could not install torch for ${python}; as root run: apt-get install --no-install-recommends ${packages.join(" ")}`,
    );
    process.exit(1);
  }
  log(`torch installed (${elapsed()})`);
}

npmPackages();
await torch();
if (process.argv.includes("--browser")) await chromium();
