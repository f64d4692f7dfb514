// bench/teachers: throughput through the teacher layer (Teacher interface + scheduler:
// limits, retries, breaker, family handling) vs the same engine driven directly, at the
// same concurrency, in the same run, interleaved round by round.
//  1. embedded: ScheduledTeacher(EmbeddedTeacher) vs EmbeddedEngine.chat on one GGUF.
//  2. HTTP: ScheduledTeacher(HttpTeacher) vs plain fetch + JSON.parse against the same
//     OpenAI-compatible server (a real model behind it).
import { join } from "node:path";
import { EmbeddedEngine } from "../../src/engine/embedded-engine.ts";
import { EmbeddedTeacher } from "../../src/teachers/embedded-teacher.ts";
import { HttpTeacher } from "../../src/teachers/http/http-teacher.ts";
import { ScheduledTeacher } from "../../src/teachers/scheduling/scheduled-teacher.ts";
import type { Teacher } from "../../src/teachers/teacher.ts";
import { OpenAiCompatibleTestServer } from "../../test/openai-compatible-server.ts";
import { benchWorld, median, verdict } from "../shared.ts";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 32);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 4);
const PROMPTS = [
  "What is 17*23?",
  "Convert 7 km to m.",
  "What is 55+91?",
  "Ann is taller than Bob. Bob is taller than Cy. Who is tallest?",
];
const MAX_TOKENS = 64;

const workspace = await benchWorld();
const gguf = join(workspace, "teachers", "tiny-gptoss", "model.gguf");

/** Completion tokens per second over REQUESTS requests, CONCURRENCY at a time. */
async function round(run: (prompt: string) => Promise<number>): Promise<number> {
  let tokens = 0;
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < REQUESTS) tokens += await run(PROMPTS[next++ % PROMPTS.length]!);
    }),
  );
  return tokens / ((performance.now() - started) / 1000);
}

async function compare(
  label: string,
  direct: (prompt: string) => Promise<number>,
  layered: (prompt: string) => Promise<number>,
): Promise<void> {
  const directRates: number[] = [];
  const layerRates: number[] = [];
  await round(direct);
  await round(layered);
  for (let i = 0; i < ROUNDS; i++) {
    // Alternate which side goes first, so drift on a shared machine hits both.
    if (i % 2 === 0) {
      directRates.push(await round(direct));
      layerRates.push(await round(layered));
    } else {
      layerRates.push(await round(layered));
      directRates.push(await round(direct));
    }
  }
  process.stdout.write(
    `${label}: direct median ${median(directRates).toFixed(0)} tok/s; teacher layer median ${median(layerRates).toFixed(0)} tok/s\n`,
  );
  process.stdout.write(
    `${verdict(`${label} teacher layer / direct`, median(layerRates) / median(directRates), 0.95)}\n`,
  );
}

process.stdout.write(
  `tiny-gptoss (${gguf}), ${REQUESTS} requests × ${ROUNDS} rounds at concurrency ${CONCURRENCY}, greedy, ≤ ${MAX_TOKENS} tokens\n`,
);

// 1. Embedded: the same engine settings on both sides (CONCURRENCY sequences on one model).
const engine = await EmbeddedEngine.load(gguf, { sequences: CONCURRENCY });
const embedded: Teacher = new ScheduledTeacher(
  await EmbeddedTeacher.open({ name: "tiny-gptoss", family: "gptoss", path: gguf, sequences: CONCURRENCY }),
  {
    limits: { concurrency: CONCURRENCY, rpm: 1e9, tpm: 1e12 },
  },
);
const ask = (prompt: string) => ({
  messages: [{ role: "user" as const, content: prompt }],
  maxTokens: MAX_TOKENS,
  temperature: 0,
});
await compare(
  "embedded",
  async (prompt) => (await engine.chat(ask(prompt))).usage.completionTokens,
  async (prompt) => (await embedded.generate(ask(prompt))).usage.completionTokens,
);
await engine.dispose();
await embedded.close();

// 2. HTTP: one server, one model; raw fetch vs the HTTP teacher behind its scheduler.
const server = await new OpenAiCompatibleTestServer(await EmbeddedEngine.load(gguf, { sequences: CONCURRENCY }), {
  model: "tiny-gptoss",
  reasoningField: "reasoning",
}).start();
const http: Teacher = new ScheduledTeacher(
  new HttpTeacher({
    name: "tiny-gptoss-http",
    family: "gptoss",
    engine: "vllm",
    baseUrl: server.baseUrl,
    model: "tiny-gptoss",
  }),
  {
    limits: { concurrency: CONCURRENCY, rpm: 1e9, tpm: 1e12 },
  },
);
await compare(
  "http",
  async (prompt) => {
    const response = await fetch(`${server.baseUrl}/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: "tiny-gptoss",
        messages: [{ role: "user", content: prompt }],
        max_tokens: MAX_TOKENS,
        temperature: 0,
      }),
    });
    return ((await response.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens;
  },
  async (prompt) => (await http.generate(ask(prompt))).usage.completionTokens,
);
await server.stop();
await server.engine.dispose();
