// What bench/gateway's two programs share: starting the servers, a store with a
// key and credit, an `avocado.yaml` serving the trivial upstream, wrk, and a
// process's CPU time.
import { median } from "../shared.ts";
import { Pool } from "undici";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { PROJECT_ROOT } from "../../src/core/paths.ts";
import { Store } from "../../src/serve/store/store.ts";

export interface Started {
  child: ChildProcess;
  /** What `ready` found in its output (a port, a URL). */
  value: string;
}

/**
 * Starts a Node program; its log (stderr) goes to a file in `cwd`, as it would in production, not through this process.
 */
export function start(command: string[], cwd: string, ready: (output: string) => string | undefined): Promise<Started> {
  return new Promise((resolve, reject) => {
    const log = openSync(join(cwd, `${basename(command.at(-1)!)}.log`), "a");
    const child = spawn(process.execPath, command, { cwd, stdio: ["ignore", "pipe", log] });
    let output = "";
    child.stdout!.on("data", (data: Buffer) => {
      output += data.toString();
      const value = ready(output);
      if (value !== undefined) resolve({ child, value });
    });
    child.on("exit", (code) => reject(new Error(`${command.join(" ")} exited ${code}: ${output}`)));
  });
}

/** The trivial upstream (canned answers), started from this checkout. */
export async function startUpstream(folder: string): Promise<{ child: ChildProcess; url: string }> {
  const { child, value } = await start(
    [join(PROJECT_ROOT, "bin", "run-ts.js"), join(PROJECT_ROOT, "bench", "gateway", "upstream.ts")],
    folder,
    (out) => /^(\d+)\n/.exec(out)?.[1],
  );
  return { child, url: `http://127.0.0.1:${value}` };
}

/**
 * `avocado serve` of the project at `root` (this checkout, or another commit's
 * worktree) in `folder`: a SQLite store with a key whose limits never bind and
 * credit that never runs out, serving `bench` from the upstream. Node flags
 * (`--cpu-prof`, …) go before the program.
 */
export async function startGateway(
  root: string,
  folder: string,
  upstreamUrl: string,
  nodeFlags: string[] = [],
): Promise<{ child: ChildProcess; origin: string; key: string }> {
  mkdirSync(folder, { recursive: true });
  const store = await Store.open(`sqlite:${join(folder, "avocado.db")}`);
  const { key } = await store.createKey({
    org: "bench",
    name: "bench",
    limits: { rpm: 100_000_000, tpm: 1_000_000_000, concurrency: 10_000 },
  });
  await store.grant("bench", 1_000_000_000_000, "bench");
  await store.close();
  writeFileSync(
    join(folder, "avocado.yaml"),
    [
      "workspace: .",
      "serve:",
      "  port: 0",
      "  store: sqlite:avocado.db",
      "  plans: { default: { rpm: 100000000, tpm: 1000000000, concurrency: 10000, topLogprobs: 0 } }",
      "  models:",
      `    - { name: bench, upstreams: ["${upstreamUrl}/v1"], price: { inputPerMillion: 1000000, outputPerMillion: 2000000 }, maxTokens: 64 }`,
      "",
    ].join("\n"),
  );
  const { child, value } = await start(
    [...nodeFlags, join(root, "bin", "avocado.js"), "--json", "serve"],
    folder,
    (out) => /"url":"(http:[^"]+)"/.exec(out)?.[1],
  );
  return { child, origin: value, key };
}

export const body = JSON.stringify({
  model: "bench",
  messages: [{ role: "user", content: "Say hello." }],
  max_tokens: 16,
});
export const streamBody = JSON.stringify({
  model: "bench",
  messages: [{ role: "user", content: "Say hello." }],
  max_tokens: 16,
  stream: true,
  stream_options: { include_usage: true },
});

/** CPU seconds (user + system, all threads) a process has used so far: steadier than a rate on a shared machine. */
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Whether wrk (Debian's package) is there, installing it when missing (unless BENCH_LOAD=node). */
export function haveWrk(): boolean {
  if (process.env.BENCH_LOAD === "node") return false;
  if (spawnSync("wrk", ["--version"]).error === undefined) return true;
  process.stdout.write("installing Debian's wrk (the load generator)…\n");
  const [command, ...prefix] = process.getuid?.() === 0 ? ["apt-get"] : ["sudo", "-n", "apt-get"];
  spawnSync(command!, [...prefix, "install", "-y", "-qq", "wrk"], {
    stdio: "ignore",
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
  });
  return spawnSync("wrk", ["--version"]).error === undefined;
}

/** A wrk script (in `folder`) that POSTs `payload` with `key`. */
export function wrkScript(folder: string, name: string, payload: string, key: string): string {
  const path = join(folder, name);
  writeFileSync(
    path,
    [
      `wrk.method = "POST"`,
      `wrk.body = ${JSON.stringify(payload)}`,
      `wrk.headers["Content-Type"] = "application/json"`,
      `wrk.headers["Authorization"] = ${JSON.stringify(`Bearer ${key}`)}`,
      "",
    ].join("\n"),
  );
  return path;
}

/**
 * wrk, one thread, against `origin`'s chat completions: every response must be a 200 (wrk counts the others, and we
 * fail on any).
 */
export function runWrk(
  origin: string,
  connections: number,
  seconds: number,
  script: string,
): { rate: number; requests: number; p50: number; p99: number } {
  const result = spawnSync(
    "wrk",
    ["-t1", `-c${connections}`, `-d${seconds}s`, "--latency", "-s", script, `${origin}/v1/chat/completions`],
    { encoding: "utf8" },
  );
  const out = result.stdout;
  if (/Non-2xx|Socket errors/.test(out)) throw new Error(`wrk saw failed requests against ${origin}:\n${out}`);
  const rate = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const requests = Number(/(\d+) requests in/.exec(out)?.[1]);
  const percentile = (p: number) => {
    const match = new RegExp(`\\s${p}%\\s+([\\d.]+)(us|ms|s)`).exec(out);
    return match ? Number(match[1]) * (match[2] === "us" ? 0.001 : match[2] === "ms" ? 1 : 1000) : NaN;
  };
  const p50 = percentile(50);
  if (!rate || Number.isNaN(p50)) throw new Error(`cannot read wrk's output:\n${out}${result.stderr}`);
  return { rate, requests, p50, p99: percentile(99) };
}

/** One chat completion on `pool`: its whole time and its time to first byte (ms). */
export async function once(pool: Pool, key: string, payload: string): Promise<{ total: number; firstByte: number }> {
  const headers = { "content-type": "application/json", authorization: `Bearer ${key}` };
  const started = performance.now();
  const response = await pool.request({ path: "/v1/chat/completions", method: "POST", headers, body: payload });
  if (response.statusCode !== 200) throw new Error(`status ${response.statusCode}: ${await response.body.text()}`);
  let firstByte = 0;
  for await (const part of response.body) {
    void part;
    firstByte ||= performance.now() - started;
  }
  return { total: performance.now() - started, firstByte };
}

/** `count` requests one after another on one connection (after 200 to warm up): the medians of both times. */
export async function sequential(
  origin: string,
  key: string,
  payload: string,
  count: number,
): Promise<{ p50: number; firstByteP50: number }> {
  const pool = new Pool(origin, { connections: 1 });
  for (let i = 0; i < 200; i++) await once(pool, key, payload);
  const totals: number[] = [];
  const firsts: number[] = [];
  for (let i = 0; i < count; i++) {
    const r = await once(pool, key, payload);
    totals.push(r.total);
    firsts.push(r.firstByte);
  }
  await pool.close();
  return { p50: median(totals), firstByteP50: median(firsts) };
}
