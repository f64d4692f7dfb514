// bench/gateway: the trivial upstream called directly vs through `avocado serve`
// (auth + limits + reservation + metering + settlement on, SQLite store), same run:
// added p50 latency and req/s (non-stream), added time to first byte (stream).
//
// The load comes from wrk (Debian's package, installed here when missing): a C
// load generator leaves the two cores to the servers, where a Node client would
// take one of them. Without wrk (BENCH_LOAD=node), a Node client stands in.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { Pool } from "undici";
import { PROJECT_ROOT } from "../../src/core/paths.ts";
import { Store } from "../../src/serve/store/store.ts";
import { median } from "../shared.ts";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const SEQUENTIAL = Number(process.env.BENCH_SEQUENTIAL ?? 2000);

/** Starts a server; its log (stderr) goes to a file, as it would in production, not through this process. */
function start(command: string[], cwd: string, ready: (output: string) => string | undefined): Promise<{ child: ChildProcess; value: string }> {
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

function haveWrk(): boolean {
  if (process.env.BENCH_LOAD === "node") return false;
  if (spawnSync("wrk", ["--version"]).error === undefined) return true;
  process.stdout.write("installing Debian's wrk (the load generator)…\n");
  const [command, ...prefix] = process.getuid?.() === 0 ? ["apt-get"] : ["sudo", "-n", "apt-get"];
  spawnSync(command!, [...prefix, "install", "-y", "-qq", "wrk"], { stdio: "ignore", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
  return spawnSync("wrk", ["--version"]).error === undefined;
}

const folder = mkdtempSync(join(tmpdir(), "avocado-gateway-"));
const upstream = await start([join(PROJECT_ROOT, "bin", "run-ts.js"), join(PROJECT_ROOT, "bench", "gateway", "upstream.ts")], folder, (out) => /^(\d+)\n/.exec(out)?.[1]);
const upstreamUrl = `http://127.0.0.1:${upstream.value}`;
const bare = await start([join(PROJECT_ROOT, "bin", "run-ts.js"), join(PROJECT_ROOT, "bench", "gateway", "bare-proxy.ts"), upstreamUrl], folder, (out) => /^(\d+)\n/.exec(out)?.[1]);
const bareUrl = `http://127.0.0.1:${bare.value}`;
const store = await Store.open(`sqlite:${join(folder, "avocado.db")}`);
const { key } = await store.createKey({ org: "bench", name: "bench", limits: { rpm: 100_000_000, tpm: 1_000_000_000, concurrency: 10_000 } });
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
const profile = process.env.BENCH_PROFILE ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_PROFILE}`] : [];
const gateway = await start([...profile, join(PROJECT_ROOT, "bin", "avocado.js"), "--json", "serve"], folder, (out) => /"url":"(http:[^"]+)"/.exec(out)?.[1]);
const gatewayOrigin = gateway.value;

const body = JSON.stringify({ model: "bench", messages: [{ role: "user", content: "Say hello." }], max_tokens: 16 });
const streamBody = JSON.stringify({ model: "bench", messages: [{ role: "user", content: "Say hello." }], max_tokens: 16, stream: true, stream_options: { include_usage: true } });
const headers = { "content-type": "application/json", authorization: `Bearer ${key}` };

interface Load {
  name: string;
  /** Median latency (ms) of requests one at a time, on one connection. */
  latency(origin: string): Promise<number>;
  /** Requests a second over CONNECTIONS connections, and how many were made. */
  throughput(origin: string): Promise<{ rate: number; requests: number }>;
  /** The same, for streamed requests (each read to its [DONE]). */
  streamThroughput(origin: string): Promise<{ rate: number; requests: number }>;
}

/** CPU seconds (user + system, all threads) a process has used so far: steadier than a rate on a shared machine. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** wrk: one thread; every response must be a 200 (wrk counts the others, and we fail on any). */
function wrkLoad(): Load {
  const scriptFor = (name: string, payload: string) => {
    const path = join(folder, name);
    writeFileSync(path, [`wrk.method = "POST"`, `wrk.body = ${JSON.stringify(payload)}`, `wrk.headers["Content-Type"] = "application/json"`, `wrk.headers["Authorization"] = ${JSON.stringify(`Bearer ${key}`)}`, ""].join("\n"));
    return path;
  };
  const script = scriptFor("post.lua", body);
  const streamScript = scriptFor("stream.lua", streamBody);
  const run = (origin: string, connections: number, seconds: number, lua = script) => {
    const result = spawnSync("wrk", ["-t1", `-c${connections}`, `-d${seconds}s`, "--latency", "-s", lua, `${origin}/v1/chat/completions`], { encoding: "utf8" });
    const out = result.stdout;
    if (/Non-2xx|Socket errors/.test(out)) throw new Error(`wrk saw failed requests against ${origin}:\n${out}`);
    const rate = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
    const requests = Number(/(\d+) requests in/.exec(out)?.[1]);
    const p50 = /\s50%\s+([\d.]+)(us|ms|s)/.exec(out);
    if (!rate || !p50) throw new Error(`cannot read wrk's output:\n${out}${result.stderr}`);
    return { rate, requests, p50: Number(p50[1]) * (p50[2] === "us" ? 0.001 : p50[2] === "ms" ? 1 : 1000) };
  };
  return {
    name: "wrk",
    latency: async (origin) => run(origin, 1, SECONDS).p50,
    throughput: async (origin) => run(origin, CONNECTIONS, SECONDS),
    streamThroughput: async (origin) => run(origin, CONNECTIONS, SECONDS, streamScript),
  };
}

async function once(pool: Pool, payload: string): Promise<{ total: number; firstByte: number }> {
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

async function sequential(origin: string, payload: string): Promise<{ p50: number; firstByteP50: number }> {
  const pool = new Pool(origin, { connections: 1 });
  for (let i = 0; i < 200; i++) await once(pool, payload);
  const totals: number[] = [];
  const firsts: number[] = [];
  for (let i = 0; i < SEQUENTIAL; i++) {
    const r = await once(pool, payload);
    totals.push(r.total);
    firsts.push(r.firstByte);
  }
  await pool.close();
  return { p50: median(totals), firstByteP50: median(firsts) };
}

function nodeLoad(): Load {
  /** Requests a second of `payload` over CONNECTIONS connections (after half a second of warm-up). */
  async function rate(origin: string, payload: string): Promise<{ rate: number; requests: number }> {
    const pool = new Pool(origin, { connections: CONNECTIONS, pipelining: 1 });
    let done = 0;
    const until = performance.now() + SECONDS * 1000;
    const warm = performance.now() + 500;
    let started = 0;
    await Promise.all(
      Array.from({ length: CONNECTIONS }, async () => {
        while (performance.now() < until) {
          await once(pool, payload);
          if (performance.now() >= warm) {
            started ||= performance.now();
            done++;
          }
        }
      }),
    );
    await pool.close();
    return { rate: done / ((performance.now() - started) / 1000), requests: done };
  }
  return {
    name: "a Node client (undici)",
    latency: async (origin) => (await sequential(origin, body)).p50,
    throughput: (origin) => rate(origin, body),
    streamThroughput: (origin) => rate(origin, streamBody),
  };
}

// BENCH_HOLD=<seconds>: print the servers and the key, and wait before loading them (to load or profile them by hand).
if (process.env.BENCH_HOLD) {
  process.stdout.write(`HOLD ${upstreamUrl} ${gatewayOrigin} ${key}\n`);
  await new Promise((resolve) => setTimeout(resolve, Number(process.env.BENCH_HOLD) * 1000));
}
const load = haveWrk() ? wrkLoad() : nodeLoad();
process.stdout.write(`upstream ${upstreamUrl}; gateway ${gatewayOrigin} (auth + limits + reservation + metering + settlement, SQLite); load from ${load.name}; ${ROUNDS} interleaved rounds, medians\n`);
const fixed = (value: number, digits = 3) => value.toFixed(digits);
const verdict = (pass: boolean) => (pass ? "PASS" : "FAIL");

// Warm both paths (JIT, connections, the SQLite cache) before measuring.
await load.throughput(upstreamUrl);
await load.throughput(gatewayOrigin);
await load.throughput(bareUrl);
const samples = { direct: [] as number[], bare: [] as number[], gateway: [] as number[], directRate: [] as number[], bareRate: [] as number[], bareCpu: [] as number[], gatewayRate: [] as number[], cpu: [] as number[] };
/** Requests a second through a server, and its CPU per request (all its threads). */
async function loaded(origin: string, pid: number): Promise<{ rate: number; cpu: number }> {
  const before = cpuSeconds(pid);
  const { rate, requests } = await load.throughput(origin);
  return { rate, cpu: ((cpuSeconds(pid) - before) * 1e6) / requests };
}
for (let round = 0; round < ROUNDS; round++) {
  samples.direct.push(await load.latency(upstreamUrl));
  samples.bare.push(await load.latency(bareUrl));
  samples.gateway.push(await load.latency(gatewayOrigin));
  samples.directRate.push((await load.throughput(upstreamUrl)).rate);
  const passThrough = await loaded(bareUrl, bare.child.pid!);
  samples.bareRate.push(passThrough.rate);
  samples.bareCpu.push(passThrough.cpu);
  const through = await loaded(gatewayOrigin, gateway.child.pid!);
  samples.gatewayRate.push(through.rate);
  samples.cpu.push(through.cpu);
}
const direct = median(samples.direct);
const through = median(samples.gateway);
const added = through - direct;
const floor = median(samples.bare) - direct;
process.stdout.write(`non-stream p50 (one connection): direct ${fixed(direct)} ms, through avocado serve ${fixed(through)} ms; added ${fixed(added)} ms (target ≤ 0.2) ${verdict(added <= 0.2)}\n`);
process.stdout.write(`  this machine's floor: a pass-through proxy with no logic (node:http + undici) adds ${fixed(floor)} ms; avocado serve adds ${fixed(added - floor)} ms more\n`);
const directRate = median(samples.directRate);
const gatewayRate = median(samples.gatewayRate);
process.stdout.write(
  `non-stream throughput (${CONNECTIONS} connections, ${SECONDS} s): direct ${fixed(directRate, 0)} req/s, through avocado serve ${fixed(gatewayRate, 0)} req/s; ratio ${fixed(gatewayRate / directRate)} (target ≥ 8000 req/s) ${verdict(gatewayRate >= 8000)}\n`,
);
process.stdout.write(`  this machine's floor: the pass-through proxy does ${fixed(median(samples.bareRate), 0)} req/s\n`);
process.stdout.write(
  `CPU per request under load (all threads; one core's worth is ${fixed(1e6 / 8000, 0)} µs at 8000 req/s): avocado serve ${fixed(median(samples.cpu), 1)} µs, the pass-through proxy ${fixed(median(samples.bareCpu), 1)} µs\n`,
);
// Streams under load: requests a second, and the gateway's CPU per streamed request (its events parsed, checked, metered and re-sent).
const streamDirect: number[] = [];
const streamThrough: number[] = [];
const streamCpu: number[] = [];
for (let round = 0; round < ROUNDS; round++) {
  streamDirect.push((await load.streamThroughput(upstreamUrl)).rate);
  const before = cpuSeconds(gateway.child.pid!);
  const { rate, requests } = await load.streamThroughput(gatewayOrigin);
  streamThrough.push(rate);
  streamCpu.push(((cpuSeconds(gateway.child.pid!) - before) * 1e6) / requests);
}
process.stdout.write(
  `stream throughput (${CONNECTIONS} connections, ${SECONDS} s, 6 events each): direct ${fixed(median(streamDirect), 0)} req/s, through avocado serve ${fixed(median(streamThrough), 0)} req/s at ${fixed(median(streamCpu), 1)} µs of CPU per request\n`,
);
const directStream = await sequential(upstreamUrl, streamBody);
const gatewayStream = await sequential(gatewayOrigin, streamBody);
const firstByte = gatewayStream.firstByteP50 - directStream.firstByteP50;
process.stdout.write(
  `stream first byte p50 (Node client): direct ${fixed(directStream.firstByteP50)} ms, through avocado serve ${fixed(gatewayStream.firstByteP50)} ms; added ${fixed(firstByte)} ms (target ≤ 1) ${verdict(firstByte <= 1)}\n`,
);

const check = await Store.open(`sqlite:${join(folder, "avocado.db")}`);
const audit = await check.audit();
const settled = await check.usage();
process.stdout.write(`ledger after the run: ${settled.reduce((sum, row) => sum + row.requests, 0)} settled requests, ${audit.entries} entries, ${audit.ok ? "balanced" : `PROBLEMS ${audit.problems.join("; ")}`}\n`);
await check.close();
gateway.child.kill("SIGINT");
await new Promise((resolve) => gateway.child.once("exit", resolve));
upstream.child.kill("SIGTERM");
bare.child.kill("SIGTERM");
