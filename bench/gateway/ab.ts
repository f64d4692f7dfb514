// bench/gateway A/B: two versions of `avocado serve` on one trivial upstream,
// loaded by wrk in alternation, pair after pair: the gateway's CPU per request,
// req/s and one-connection p50 of each, and the paired CPU ratio B/A. On a
// shared machine whose speed drifts by tens of percent within minutes, a ratio
// of runs seconds apart is what can tell a 5–10 % change; two separate
// `npm run bench:gateway` runs cannot.
//
//   npm run bench:gateway:ab -- <rev A> [<rev B>]    (B: the working tree when left out)
//
// Each revision is checked out in a temporary git worktree sharing this
// checkout's node_modules. BENCH_PAIRS (6), BENCH_SECONDS (3 per run),
// BENCH_STREAM=1 for streamed requests.
import { spawnSync } from "node:child_process";
import { mkdtempSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PROJECT_ROOT } from "../../src/core/paths.ts";
import { median } from "../shared.ts";
import {
  body,
  cpuSeconds,
  haveWrk,
  runWrk,
  sequential,
  startGateway,
  startUpstream,
  streamBody,
  wrkScript,
} from "./harness.ts";

const PAIRS = Number(process.env.BENCH_PAIRS ?? 6);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const [revA, revB] = process.argv.slice(2);
if (!revA) {
  process.stderr.write("usage: npm run bench:gateway:ab -- <rev A> [<rev B>]   (B: the working tree when left out)\n");
  process.exit(2);
}
if (!haveWrk()) {
  process.stderr.write("bench:gateway:ab needs wrk (Debian's package), which could not be installed\n");
  process.exit(1);
}

const git = (...args: string[]) => {
  const result = spawnSync("git", args, { cwd: PROJECT_ROOT, encoding: "utf8" });
  if (result.status !== 0) throw new Error(`git ${args.join(" ")}: ${result.stderr.trim()}`);
  return result.stdout.trim();
};
const folder = mkdtempSync(join(tmpdir(), "avocado-gateway-ab-"));
const worktrees: string[] = [];
/** A checkout of `rev` beside this one (sharing its node_modules), or this checkout itself. */
function checkout(rev: string | undefined, name: string): { root: string; label: string } {
  if (rev === undefined) return { root: PROJECT_ROOT, label: "working tree" };
  const commit = git("rev-parse", "--short", `${rev}^{commit}`);
  const root = join(folder, name);
  git("worktree", "add", "--detach", root, commit);
  worktrees.push(root);
  symlinkSync(join(PROJECT_ROOT, "node_modules"), join(root, "node_modules"));
  return { root, label: `${rev} (${commit})` };
}

const sides = [checkout(revA, "a"), checkout(revB, "b")];
const upstream = await startUpstream(folder);
try {
  const gateways = [];
  for (const [index, side] of sides.entries())
    gateways.push({ ...side, ...(await startGateway(side.root, join(folder, `serve-${index}`), upstream.url)) });
  const payload = process.env.BENCH_STREAM === "1" ? streamBody : body;
  const scripts = gateways.map((g, index) => wrkScript(folder, `load-${index}.lua`, payload, g.key));
  process.stdout.write(
    `A: ${gateways[0]!.label}\nB: ${gateways[1]!.label}\n${PAIRS} pairs of ${SECONDS} s runs (${CONNECTIONS} connections, ${payload === body ? "non-stream" : "stream"}), alternating which goes first\n`,
  );
  // Warm both (JIT, connections, the SQLite cache).
  for (const [index, gateway] of gateways.entries()) runWrk(gateway.origin, CONNECTIONS, SECONDS, scripts[index]!);
  const samples = gateways.map(() => ({
    cpu: [] as number[],
    rate: [] as number[],
    p99: [] as number[],
    p50: [] as number[],
    firstByte: [] as number[],
  }));
  for (let pair = 0; pair < PAIRS; pair++) {
    const order = pair % 2 === 0 ? [0, 1] : [1, 0];
    for (const index of order) {
      const g = gateways[index]!;
      const before = cpuSeconds(g.child.pid!);
      const loaded = runWrk(g.origin, CONNECTIONS, SECONDS, scripts[index]!);
      samples[index]!.cpu.push(((cpuSeconds(g.child.pid!) - before) * 1e6) / loaded.requests);
      samples[index]!.rate.push(loaded.rate);
      samples[index]!.p99.push(loaded.p99);
      samples[index]!.p50.push(runWrk(g.origin, 1, Math.max(1, Math.round(SECONDS / 2)), scripts[index]!).p50);
      // A stream's time to first byte, from a Node client on one connection.
      if (payload === streamBody)
        samples[index]!.firstByte.push((await sequential(g.origin, g.key, payload, 300)).firstByteP50);
    }
    const ratio = samples[1]!.cpu[pair]! / samples[0]!.cpu[pair]!;
    process.stdout.write(
      `pair ${pair + 1}: CPU per request A ${samples[0]!.cpu[pair]!.toFixed(1)} µs, B ${samples[1]!.cpu[pair]!.toFixed(1)} µs (B/A ${ratio.toFixed(3)})\n`,
    );
  }
  for (const [index, s] of samples.entries()) {
    process.stdout.write(
      `${index === 0 ? "A" : "B"}: CPU per request median ${median(s.cpu).toFixed(1)} µs, ${median(s.rate).toFixed(0)} req/s (p99 ${median(s.p99).toFixed(2)} ms), one-connection p50 ${median(s.p50).toFixed(3)} ms\n`,
    );
  }
  // "No slower": B's req/s over A's, and A's times over B's (above 1: B is faster).
  const paired = (values: (s: (typeof samples)[number]) => number[], invert: boolean) =>
    median(
      values(samples[1]!).map((b, pair) => (invert ? values(samples[0]!)[pair]! / b : b / values(samples[0]!)[pair]!)),
    );
  process.stdout.write(
    `speed of B against A (median of paired ratios, 1 = the same, above 1 = B faster): req/s ${paired((s) => s.rate, false).toFixed(3)}, one-connection p50 ${paired((s) => s.p50, true).toFixed(3)}` +
      (payload === streamBody
        ? `, stream first byte ${paired((s) => s.firstByte, true).toFixed(3)} (A ${median(samples[0]!.firstByte).toFixed(3)} ms, B ${median(samples[1]!.firstByte).toFixed(3)} ms)`
        : "") +
      "\n",
  );
  const ratios = samples[1]!.cpu.map((cpu, pair) => cpu / samples[0]!.cpu[pair]!);
  process.stdout.write(
    `B/A CPU per request: median of the paired ratios ${median(ratios).toFixed(3)}; B used less in ${ratios.filter((r) => r < 1).length} of ${PAIRS} pairs\n`,
  );
  await Promise.all(gateways.map((g) => new Promise((resolve) => g.child.once("exit", resolve).kill("SIGINT"))));
} finally {
  upstream.child.kill("SIGTERM");
  for (const root of worktrees) git("worktree", "remove", "--force", root);
}
