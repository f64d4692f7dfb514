import { readdirSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../../core/paths.ts";
import type { TeacherEvent, TeacherRequest } from "../teacher.ts";
import { HttpTeacher } from "./http-teacher.ts";
import type { HttpEngine } from "./dialects.ts";

/**
 * The servers no engine here can stand in for (SGLang, Ollama, TGI), each
 * replayed from answers in its own documented format (`test/data/dialects/`,
 * one file per server and case): what the teacher sends them, and what it
 * makes of their answers, whole and streamed. vLLM and llama.cpp's dialects
 * run against real engines in `http-teacher.test.ts`.
 */
interface Recorded {
  format: string;
  request: Record<string, unknown>;
  forbidden?: string[];
  ask: Partial<Pick<TeacherRequest, "thinking" | "reasoningEffort" | "topLogprobs">> & { family?: "qwen" | "gptoss" };
  expect: { content: string; reasoning: string; promptTokens: number; completionTokens: number; logprobs?: number };
  chat: unknown;
  stream: unknown[];
}

const FOLDER = join(PROJECT_ROOT, "test", "data", "dialects");
const CASES = readdirSync(FOLDER)
  .filter((name) => name.endsWith(".json"))
  .map((name) => ({
    name: name.replace(/\.json$/, ""),
    engine: name.split(/[-.]/)[0] as HttpEngine,
    recorded: JSON.parse(readFileSync(join(FOLDER, name), "utf8")) as Recorded,
  }));

describe.each(CASES)("the $name dialect, against answers in its documented format", ({ engine, recorded }) => {
  let server: Server;
  const received: Record<string, unknown>[] = [];
  let teacher: HttpTeacher;

  beforeAll(async () => {
    server = createServer((request, response) => {
      let body = "";
      request.on("data", (part: Buffer) => (body += part.toString()));
      request.on("end", () => {
        const sent = JSON.parse(body) as Record<string, unknown>;
        received.push(sent);
        if (!sent.stream)
          return void response
            .writeHead(200, { "content-type": "application/json" })
            .end(JSON.stringify(recorded.chat));
        response.writeHead(200, { "content-type": "text/event-stream" });
        for (const event of recorded.stream) response.write(`data: ${JSON.stringify(event)}\n\n`);
        response.end("data: [DONE]\n\n");
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
    teacher = new HttpTeacher({
      name: `${engine}-teacher`,
      family: recorded.ask.family ?? "qwen",
      engine,
      baseUrl,
      model: "m",
    });
  });
  afterAll(async () => {
    await teacher?.close();
    server?.close();
  });

  const request = (): TeacherRequest => {
    const { family: _family, ...ask } = recorded.ask;
    return { messages: [{ role: "user", content: "What is 17*23?" }], maxTokens: 32, ...ask };
  };

  it("sends the fields its documentation names, and none of another server's", async () => {
    await teacher.generate(request());
    const sent = received.at(-1)!;
    expect(sent).toMatchObject(recorded.request);
    for (const field of recorded.forbidden ?? []) expect(sent).not.toHaveProperty(field);
  });

  it("reads a whole answer: content, reasoning, usage and log-probs", async () => {
    const answer = await teacher.generate(request());
    expect([answer.content, answer.reasoning, answer.usage.promptTokens, answer.usage.completionTokens]).toEqual([
      recorded.expect.content,
      recorded.expect.reasoning,
      recorded.expect.promptTokens,
      recorded.expect.completionTokens,
    ]);
    // The server's own counts; only a split between reasoning and content it did not report is apportioned.
    if (recorded.expect.reasoning === "") expect(answer.usage.estimated).toBeFalsy();
    if (recorded.expect.logprobs !== undefined) {
      expect(answer.logprobs).toHaveLength(recorded.expect.logprobs);
      expect(answer.logprobs![0]!.top).toHaveLength(recorded.ask.topLogprobs!);
    }
  });

  it.runIf(engine === "ollama")(
    "refuses log-probs, which this server does not serve, before sending anything",
    async () => {
      const before = received.length;
      await expect(teacher.generate({ ...request(), topLogprobs: 1 })).rejects.toMatchObject({ kind: "unsupported" });
      expect(received).toHaveLength(before);
    },
  );

  it("reads a stream to the same answer", async () => {
    const events: TeacherEvent[] = [];
    for await (const event of teacher.stream(request())) events.push(event);
    const done = events.at(-1)!;
    if (done.type !== "done") throw new Error("the stream did not end with its answer");
    const streamed = (type: "content" | "reasoning") =>
      events.flatMap((event) => (event.type === type ? [event.text] : [])).join("");
    expect([
      streamed("content"),
      streamed("reasoning"),
      done.response.content,
      done.response.usage.completionTokens,
    ]).toEqual([
      recorded.expect.content,
      recorded.expect.reasoning,
      recorded.expect.content,
      recorded.expect.completionTokens,
    ]);
    if (recorded.expect.logprobs !== undefined) expect(done.response.logprobs).toHaveLength(recorded.expect.logprobs);
  });
});
