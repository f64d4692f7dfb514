// bench/gateway: the trivial upstream called directly vs through `avocado serve`
// (auth + limits + reservation + metering + settlement on, SQLite store), same run:
// added p50 latency and req/s ratio (non-stream), added time to first byte (stream).
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Pool } from "undici";
import { PROJECT_ROOT } from "../../src/core/paths.ts";
import { Store } from "../../src/serve/store/store.ts";
import { median } from "../shared.ts";

const SEQUENTIAL = Number(process.env.BENCH_SEQUENTIAL ?? 2000);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);

function start(command: string[], cwd: string, ready: (output: string) => string | undefined): Promise<{ child: ChildProcess; value: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, command, { cwd, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout!.on("data", (data: Buffer) => {
      output += data.toString();
      const value = ready(output);
      if (value !== undefined) resolve({ child, value });
    });
    child.stderr!.on("data", () => undefined);
    child.on("exit", (code) => reject(new Error(`${command.join(" ")} exited ${code}: ${output}`)));
  });
}

const folder = mkdtempSync(join(tmpdir(), "avocado-gateway-"));
const upstream = await start([join(PROJECT_ROOT, "bin", "run-ts.js"), join(PROJECT_ROOT, "bench", "gateway", "upstream.ts")], folder, (out) => /^(\d+)\n/.exec(out)?.[1]);
const upstreamUrl = `http://127.0.0.1:${upstream.value}`;
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

const body = JSON.stringify({ model: "bench", messages: [{ role: "user", content: "Say hello." }], max_tokens: 16 });
const streamBody = JSON.stringify({ model: "bench", messages: [{ role: "user", content: "Say hello." }], max_tokens: 16, stream: true, stream_options: { include_usage: true } });
const headers = { "content-type": "application/json", authorization: `Bearer ${key}` };

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

async function throughput(origin: string): Promise<number> {
  const pool = new Pool(origin, { connections: CONNECTIONS, pipelining: 1 });
  let done = 0;
  const until = performance.now() + SECONDS * 1000;
  const warm = performance.now() + 500;
  let counting = false;
  let started = 0;
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (performance.now() < until) {
        await once(pool, body);
        if (!counting && performance.now() >= warm) {
          counting = true;
          started = performance.now();
        }
        if (counting) done++;
      }
    }),
  );
  const rate = done / ((performance.now() - started) / 1000);
  await pool.close();
  return rate;
}

const gatewayOrigin = gateway.value;
process.stdout.write(`upstream ${upstreamUrl}; gateway ${gatewayOrigin} (auth + limits + reservation + metering + settlement, SQLite)\n`);
const directLatency = await sequential(upstreamUrl, body);
const gatewayLatency = await sequential(gatewayOrigin, body);
process.stdout.write(`non-stream p50: direct ${directLatency.p50.toFixed(3)} ms, through avocado serve ${gatewayLatency.p50.toFixed(3)} ms; added ${(gatewayLatency.p50 - directLatency.p50).toFixed(3)} ms (target ≤ 0.2)\n`);
const directStream = await sequential(upstreamUrl, streamBody);
const gatewayStream = await sequential(gatewayOrigin, streamBody);
process.stdout.write(`stream first byte p50: direct ${directStream.firstByteP50.toFixed(3)} ms, through avocado serve ${gatewayStream.firstByteP50.toFixed(3)} ms; added ${(gatewayStream.firstByteP50 - directStream.firstByteP50).toFixed(3)} ms (target ≤ 1)\n`);
const directRate = await throughput(upstreamUrl);
const gatewayRate = await throughput(gatewayOrigin);
process.stdout.write(`non-stream throughput (${CONNECTIONS} connections, ${SECONDS} s): direct ${directRate.toFixed(0)} req/s, through avocado serve ${gatewayRate.toFixed(0)} req/s; ratio ${(gatewayRate / directRate).toFixed(3)} (target ≥ 8000 req/s)\n`);

const check = await Store.open(`sqlite:${join(folder, "avocado.db")}`);
const audit = await check.audit();
process.stdout.write(`ledger after the run: ${audit.entries} entries, ${audit.ok ? "balanced" : `PROBLEMS ${audit.problems.join("; ")}`}\n`);
await check.close();
gateway.child.kill("SIGINT");
await new Promise((resolve) => gateway.child.once("exit", resolve));
upstream.child.kill("SIGTERM");
