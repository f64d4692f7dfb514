// bench/evals: the eval statistics at the sizes a release gate meets. A paired bootstrap of 10,000 resamples over
// 10,000 items must take at most a second; the exact McNemar test and the Wilson intervals are printed beside it.
//
//   npm run bench:evals
import { SeededRandom } from "../../src/core/random.ts";
import { mcnemarExact, pairedBootstrap, wilson } from "../../src/evals/stats.ts";
import { median } from "../shared.ts";

const ITEMS = Number(process.env.BENCH_ITEMS ?? 10_000);
const RESAMPLES = Number(process.env.BENCH_RESAMPLES ?? 10_000);
const random = new SeededRandom(3);
const a: number[] = Array.from({ length: ITEMS }, () => (random.next() < 0.7 ? 1 : 0));
const b = a.map((value) => (random.next() < 0.1 ? 1 - value : value));

const times: number[] = [];
let result = pairedBootstrap(a, b, { resamples: RESAMPLES, seed: 1 });
for (let run = 0; run < 5; run++) {
  const started = performance.now();
  result = pairedBootstrap(a, b, { resamples: RESAMPLES, seed: run });
  times.push(performance.now() - started);
}
const seconds = median(times) / 1000;
const started = performance.now();
const exact = mcnemarExact(
  a.map((v) => v === 1),
  b.map((v) => v === 1),
);
const mcnemarMs = performance.now() - started;
process.stdout.write(
  `paired bootstrap, ${RESAMPLES} resamples over ${ITEMS} items: ${seconds.toFixed(3)} s (median of 5; target ≤ 1 s) ${seconds <= 1 ? "PASS" : "FAIL"}\n` +
    `  difference ${result.estimate.toFixed(4)} [${result.low.toFixed(4)}, ${result.high.toFixed(4)}]\n` +
    `exact McNemar on the same items: ${mcnemarMs.toFixed(1)} ms (p = ${exact.pValue.toPrecision(3)}); ` +
    `accuracy A ${JSON.stringify(
      wilson(
        a.reduce((s, v) => s + v, 0),
        ITEMS,
      ),
    )}\n`,
);
process.exitCode = seconds <= 1 ? 0 : 1;
