// bench/gateway: the trivial upstream called directly vs through `avocado serve`
// (auth + limits + hold + metering + settlement on, SQLite store), same run:
// added p50 latency and req/s (non-stream), added time to first byte (stream).
//
// The load comes from wrk (Debian's package, installed here when missing): a C
// load generator leaves the two cores to the servers, where a Node client would
// take one of them. Without wrk (BENCH_LOAD=node), a Node client stands in.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Pool } from "undici";
import { PROJECT_ROOT } from "../../src/core/paths.ts";
import { Store } from "../../src/serve/store/store.ts";
import { median } from "../shared.ts";
import {
  body,
  cpuSeconds,
  haveWrk,
  once,
  runWrk,
  sequential,
  start,
  startGateway,
  startUpstream,
  streamBody,
  wrkScript,
} from "./harness.ts";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const SEQUENTIAL = Number(process.env.BENCH_SEQUENTIAL ?? 2000);

const folder = mkdtempSync(join(tmpdir(), "avocado-gateway-"));
const upstream = await startUpstream(folder);
const upstreamUrl = upstream.url;
const bare = await start(
  [join(PROJECT_ROOT, "bin", "run-ts.js"), join(PROJECT_ROOT, "bench", "gateway", "bare-proxy.ts"), upstreamUrl],
  folder,
  (out) => /^(\d+)\n/.exec(out)?.[1],
);
const bareUrl = `http://127.0.0.1:${bare.value}`;
const profile = process.env.BENCH_PROFILE ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_PROFILE}`] : [];
const gateway = await startGateway(PROJECT_ROOT, folder, upstreamUrl, profile);
const gatewayOrigin = gateway.origin;
const key = gateway.key;

interface Load {
  name: string;
  /** Median latency (ms) of requests one at a time, on one connection. */
  latency(origin: string): Promise<number>;
  /** Requests a second over CONNECTIONS connections, and how many were made. */
  throughput(origin: string): Promise<{ rate: number; requests: number }>;
  /** The same, for streamed requests (each read to its [DONE]). */
  streamThroughput(origin: string): Promise<{ rate: number; requests: number }>;
}

/** wrk: one thread; every response must be a 200. */
function wrkLoad(): Load {
  const script = wrkScript(folder, "post.lua", body, key);
  const streamScript = wrkScript(folder, "stream.lua", streamBody, key);
  return {
    name: "wrk",
    latency: async (origin) => runWrk(origin, 1, SECONDS, script).p50,
    throughput: async (origin) => runWrk(origin, CONNECTIONS, SECONDS, script),
    streamThroughput: async (origin) => runWrk(origin, CONNECTIONS, SECONDS, streamScript),
  };
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
          await once(pool, key, payload);
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
    latency: async (origin) => (await sequential(origin, key, body, SEQUENTIAL)).p50,
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
process.stdout.write(
  `upstream ${upstreamUrl}; gateway ${gatewayOrigin} (auth + limits + hold + metering + settlement, SQLite); load from ${load.name}; ${ROUNDS} interleaved rounds, medians\n`,
);
const fixed = (value: number, digits = 3) => value.toFixed(digits);
const verdict = (pass: boolean) => (pass ? "PASS" : "FAIL");

// Warm both paths (JIT, connections, the SQLite cache) before measuring.
await load.throughput(upstreamUrl);
await load.throughput(gatewayOrigin);
await load.throughput(bareUrl);
const samples = {
  direct: [] as number[],
  bare: [] as number[],
  gateway: [] as number[],
  directRate: [] as number[],
  bareRate: [] as number[],
  bareCpu: [] as number[],
  gatewayRate: [] as number[],
  cpu: [] as number[],
};
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
process.stdout.write(
  `non-stream p50 (one connection): direct ${fixed(direct)} ms, through avocado serve ${fixed(through)} ms; added ${fixed(added)} ms (target ≤ 0.2) ${verdict(added <= 0.2)}\n`,
);
process.stdout.write(
  `  this machine's floor: a pass-through proxy with no logic (node:http + undici) adds ${fixed(floor)} ms; avocado serve adds ${fixed(added - floor)} ms more\n`,
);
const directRate = median(samples.directRate);
const gatewayRate = median(samples.gatewayRate);
process.stdout.write(
  `non-stream throughput (${CONNECTIONS} connections, ${SECONDS} s): direct ${fixed(directRate, 0)} req/s, through avocado serve ${fixed(gatewayRate, 0)} req/s; ratio ${fixed(gatewayRate / directRate)} (target ≥ 8000 req/s) ${verdict(gatewayRate >= 8000)}\n`,
);
process.stdout.write(
  `  this machine's floor: the pass-through proxy does ${fixed(median(samples.bareRate), 0)} req/s\n`,
);
process.stdout.write(
  `CPU per request under load (all threads; one core's worth is ${fixed(1e6 / 8000, 0)} µs at 8000 req/s): avocado serve ${fixed(median(samples.cpu), 1)} µs, the pass-through proxy ${fixed(median(samples.bareCpu), 1)} µs\n`,
);
// Streams under load: requests a second, and the gateway's CPU per streamed request (its events parsed, checked,
// metered and re-sent).
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
const directStream = await sequential(upstreamUrl, key, streamBody, SEQUENTIAL);
const gatewayStream = await sequential(gatewayOrigin, key, streamBody, SEQUENTIAL);
const firstByte = gatewayStream.firstByteP50 - directStream.firstByteP50;
process.stdout.write(
  `stream first byte p50 (Node client): direct ${fixed(directStream.firstByteP50)} ms, through avocado serve ${fixed(gatewayStream.firstByteP50)} ms; added ${fixed(firstByte)} ms (target ≤ 1) ${verdict(firstByte <= 1)}\n`,
);

const check = await Store.open(`sqlite:${join(folder, "avocado.db")}`);
const audit = await check.audit();
const settled = await check.usage();
process.stdout.write(
  `ledger after the run: ${settled.reduce((sum, row) => sum + row.requests, 0)} settled requests, ${audit.entries} entries, ${audit.ok ? "balanced" : `PROBLEMS ${audit.problems.join("; ")}`}\n`,
);
await check.close();
gateway.child.kill("SIGINT");
await new Promise((resolve) => gateway.child.once("exit", resolve));
upstream.child.kill("SIGTERM");
bare.child.kill("SIGTERM");
