import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ModelError } from "../core/model-error.ts";
import type { Teacher, TeacherEvent, TeacherRequest, TeacherResponse } from "./teacher.ts";

/**
 * The conformance suite every Teacher implementation passes (embedded GGUF,
 * OpenAI-compatible HTTP in each reasoning dialect). It checks behaviour, not
 * wording: the tiny teachers answer the tiny world's questions, so greedy
 * answers are deterministic and comparable across transports.
 */
export interface ConformanceSubject {
  label: string;
  open(): Promise<Teacher>;
  /** Questions the teacher was trained on (its skills). */
  prompts: [string, string, string];
  /** Whether its answers carry reasoning (Qwen <think>, harmony analysis). */
  reasons: boolean;
}

const CONTROL_MARKERS = /<\|(?:im_start|im_end|channel|message|start|end|return)\|>|<\/?think>|<(?:start|end)_of_turn>/;

async function collect(
  stream: AsyncIterable<TeacherEvent>,
): Promise<{ content: string; reasoning: string; response: TeacherResponse; events: number }> {
  let content = "";
  let reasoning = "";
  let response: TeacherResponse | undefined;
  let events = 0;
  for await (const event of stream) {
    events++;
    if (event.type === "content") content += event.text;
    else if (event.type === "reasoning") reasoning += event.text;
    else {
      expect(response, "exactly one done event").toBeUndefined();
      response = event.response;
    }
  }
  expect(response, "a done event ends the stream").toBeDefined();
  return { content, reasoning, response: response!, events };
}

export function describeTeacherConformance(subject: ConformanceSubject): void {
  describe(`Teacher conformance: ${subject.label}`, () => {
    let teacher: Teacher;
    const ask = (prompt: string, extra: Partial<TeacherRequest> = {}): TeacherRequest => ({
      messages: [{ role: "user", content: prompt }],
      maxTokens: 48,
      ...extra,
    });

    beforeAll(async () => {
      teacher = await subject.open();
    });
    afterAll(async () => {
      await teacher?.close();
    });

    it("is healthy and declares its capabilities", async () => {
      const health = await teacher.health();
      expect(health.ok, health.detail).toBe(true);
      expect(teacher.capabilities.maxTopLogprobs).toBeGreaterThanOrEqual(5);
      expect(teacher.capabilities.streaming).toBe(true);
    });

    it("generates an answer with reasoning separated, usage and cost", async () => {
      const response = await teacher.generate(ask(subject.prompts[0]));
      expect(response.teacher).toBe(teacher.name);
      expect(response.content.trim().length).toBeGreaterThan(0);
      expect(response.content).not.toMatch(CONTROL_MARKERS);
      expect(response.reasoning).not.toMatch(CONTROL_MARKERS);
      if (subject.reasons) expect(response.reasoning.length).toBeGreaterThan(0);
      expect(["stop", "length"]).toContain(response.finishReason);
      expect(response.usage.promptTokens).toBeGreaterThan(0);
      expect(response.usage.completionTokens).toBeGreaterThan(0);
      expect(response.usage.reasoningTokens).toBeLessThanOrEqual(response.usage.completionTokens);
      expect(Number.isInteger(response.costMicros)).toBe(true);
      expect(response.latencyMs).toBeGreaterThan(0);
    });

    it("streams exactly the response it generates", async () => {
      const generated = await teacher.generate(ask(subject.prompts[1]));
      const streamed = await collect(teacher.stream(ask(subject.prompts[1])));
      expect(streamed.events).toBeGreaterThanOrEqual(2);
      expect(streamed.response.content).toBe(generated.content);
      expect(streamed.response.reasoning).toBe(generated.reasoning);
      expect(streamed.response.usage).toEqual(generated.usage);
      expect(streamed.content.trim()).toBe(generated.content.trim());
      expect(streamed.reasoning.trim()).toBe(generated.reasoning.trim());
    });

    it("stops at maxTokens with finish reason 'length'", async () => {
      const response = await teacher.generate(ask(subject.prompts[0], { maxTokens: 3 }));
      expect(response.finishReason).toBe("length");
      // node-llama-cpp forces harmony's channel header without counting it against the limit: one token of slack.
      expect(response.usage.completionTokens).toBeLessThanOrEqual(4);
    });

    it("returns top-k log-probs: sorted, at most k, the greedy choice on top", async () => {
      const response = await teacher.generate(ask(subject.prompts[2], { topLogprobs: 3, maxTokens: 12 }));
      const logprobs = response.logprobs ?? [];
      expect(logprobs.length).toBeGreaterThan(0);
      for (const token of logprobs) {
        expect(token.logprob).toBeLessThanOrEqual(1e-6);
        expect(token.top.length).toBeGreaterThan(0);
        expect(token.top.length).toBeLessThanOrEqual(3);
        for (let i = 1; i < token.top.length; i++)
          expect(token.top[i]!.logprob).toBeLessThanOrEqual(token.top[i - 1]!.logprob);
        expect(token.logprob).toBeCloseTo(token.top[0]!.logprob, 4);
      }
    });

    it("scores a continuation teacher-forced, consistent with its own generation (or says it cannot)", async () => {
      const request = { messages: [{ role: "user" as const, content: subject.prompts[2] }] };
      if (!teacher.capabilities.score) {
        await expect(teacher.score({ ...request, continuation: "x" })).rejects.toMatchObject({ kind: "unsupported" });
        return;
      }
      const generated = await teacher.generate({ ...request, maxTokens: 4, topLogprobs: 2 });
      const first = generated.logprobs?.[0];
      expect(first).toBeDefined();
      const scored = await teacher.score({ ...request, continuation: first!.text, topLogprobs: 2 });
      expect(scored.tokens.length).toBe(1);
      expect(scored.tokens[0]!.logprob).toBeCloseTo(first!.logprob, 3);
      expect(scored.tokens[0]!.top.map((t) => t.text)).toEqual(first!.top.map((t) => t.text));
      const longer = await teacher.score({ ...request, continuation: "The answer is 42." });
      expect(longer.tokens.length).toBeGreaterThan(2);
      expect(longer.logprob).toBeCloseTo(
        longer.tokens.reduce((sum, t) => sum + t.logprob, 0),
        6,
      );
      expect(longer.logprob).toBeLessThan(0);
      expect(longer.promptTokens).toBeGreaterThan(0);
    });

    it("takes system and developer instructions in its family's way", async () => {
      const response = await teacher.generate({
        messages: [
          { role: "system", content: "You are a careful assistant." },
          { role: "developer", content: "Answer briefly." },
          { role: "user", content: subject.prompts[0] },
        ],
        maxTokens: 32,
      });
      // Accepted and answered; a reasoning teacher may still be reasoning at 32 tokens.
      expect(`${response.reasoning}${response.content}`.trim().length).toBeGreaterThan(0);
    });

    it("answers concurrent requests exactly as it answers them one by one", async () => {
      const sequential: string[] = [];
      for (const prompt of subject.prompts) sequential.push((await teacher.generate(ask(prompt))).content);
      const concurrent = await Promise.all(subject.prompts.map((prompt) => teacher.generate(ask(prompt))));
      expect(concurrent.map((r) => r.content)).toEqual(sequential);
    });

    it("cancels a stream with an AbortSignal, and keeps working afterwards", async () => {
      const controller = new AbortController();
      const stream = teacher.stream(ask(subject.prompts[1], { maxTokens: 200, signal: controller.signal }));
      const iterator = stream[Symbol.asyncIterator]();
      const first = iterator.next();
      controller.abort();
      await expect(first).rejects.toSatisfy((error) => error instanceof ModelError && error.kind === "aborted");
      const already = new AbortController();
      already.abort();
      await expect(teacher.generate(ask(subject.prompts[0], { signal: already.signal }))).rejects.toMatchObject({
        kind: "aborted",
      });
      const after = await teacher.generate(ask(subject.prompts[0]));
      expect(after.content.length).toBeGreaterThan(0);
    });

    it("stops generating when the reader stops reading", async () => {
      let count = 0;
      for await (const event of teacher.stream(ask(subject.prompts[1], { maxTokens: 200 }))) {
        expect(event.type).not.toBe("done");
        if (++count === 1) break;
      }
      const after = await teacher.generate(ask(subject.prompts[2]));
      expect(after.content.length).toBeGreaterThan(0);
    });
  });
}
