// bench/engine: decode tokens/s through Avocado's engine module vs raw node-llama-cpp
// (LlamaChat on a context sequence) on the same GGUF, same run; then aggregate
// tokens/s with 8 concurrent sequences vs 1.
import { join } from "node:path";
import { LlamaChat } from "node-llama-cpp";
import { EmbeddedEngine } from "../../src/engine/embedded-engine.ts";
import { sharedLlama } from "../../src/engine/llama.ts";
import { CHAT_FORMATS } from "../../src/chat/chat-format.ts";
import { benchWorld, median, verdict } from "../shared.ts";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 40);
const PROMPTS = [
  "What is 17*23?",
  "Convert 7 km to m.",
  "What is 55+91?",
  "Ann is taller than Bob. Bob is taller than Cy. Who is tallest?",
];
const MAX_TOKENS = 64;

const workspace = await benchWorld();
const gguf = join(workspace, "teachers", "tiny-gptoss", "model.gguf");

// Raw node-llama-cpp: the same model settings the engine uses (1 thread for a tiny model).
const llama = await sharedLlama();
const model = await llama.loadModel({ modelPath: gguf });
const context = await model.createContext({ contextSize: model.trainContextSize, threads: 1 });
const sequence = context.getSequence();
const wrapper = CHAT_FORMATS.gptoss.createWrapper();
const engine = await EmbeddedEngine.load(gguf, { sequences: 1 });
// Both sides produce the same greedy text; both are credited with the engine's count of completion tokens per prompt.
const tokensOf = new Map<string, number>();
for (const prompt of PROMPTS)
  tokensOf.set(
    prompt,
    (await engine.chat({ messages: [{ role: "user", content: prompt }], maxTokens: MAX_TOKENS })).usage
      .completionTokens,
  );

async function rawRound(): Promise<number> {
  let tokens = 0;
  const started = performance.now();
  for (let i = 0; i < REQUESTS; i++) {
    const prompt = PROMPTS[i % PROMPTS.length] as string;
    const chat = new LlamaChat({ contextSequence: sequence, chatWrapper: wrapper, autoDisposeSequence: false });
    await chat.generateResponse(
      [
        { type: "user", text: prompt },
        { type: "model", response: [] },
      ],
      { maxTokens: MAX_TOKENS, temperature: 0 },
    );
    tokens += tokensOf.get(prompt) as number;
    chat.dispose({ disposeSequence: false });
  }
  return tokens / ((performance.now() - started) / 1000);
}

async function engineRound(target: EmbeddedEngine, concurrency: number): Promise<number> {
  let tokens = 0;
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < REQUESTS) {
        const i = next++;
        const result = await target.chat({
          messages: [{ role: "user", content: PROMPTS[i % PROMPTS.length] as string }],
          maxTokens: MAX_TOKENS,
          temperature: 0,
        });
        tokens += result.usage.completionTokens;
      }
    }),
  );
  return tokens / ((performance.now() - started) / 1000);
}

const raw: number[] = [];
const ours: number[] = [];
await rawRound();
await engineRound(engine, 1);
for (let round = 0; round < ROUNDS; round++) {
  raw.push(await rawRound());
  ours.push(await engineRound(engine, 1));
}
process.stdout.write(
  `tiny-gptoss (${gguf}), ${REQUESTS} requests × ${ROUNDS} rounds, greedy, ≤ ${MAX_TOKENS} tokens\n`,
);
process.stdout.write(
  `raw node-llama-cpp median ${median(raw).toFixed(0)} tok/s; engine median ${median(ours).toFixed(0)} tok/s\n`,
);
process.stdout.write(`${verdict("engine / raw decode tokens/s", median(ours) / median(raw), 0.95)}\n`);
await engine.dispose();

const one = await EmbeddedEngine.load(gguf, { sequences: 1 });
const eight = await EmbeddedEngine.load(gguf, { sequences: 8 });
const single: number[] = [];
const parallel: number[] = [];
for (let round = 0; round < ROUNDS; round++) {
  single.push(await engineRound(one, 1));
  parallel.push(await engineRound(eight, 8));
}
process.stdout.write(
  `aggregate: 1 sequence ${median(single).toFixed(0)} tok/s; 8 concurrent sequences ${median(parallel).toFixed(0)} tok/s; ratio ${(median(parallel) / median(single)).toFixed(2)}×\n`,
);
await one.dispose();
await eight.dispose();
await context.dispose();
await model.dispose();
