import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { OpenAiCompatibleTestServer, type TestServerOptions } from "../../../test/openai-compatible-server.ts";
import { scratchFolder, teacherGguf, TEST_WORKSPACE } from "../../../test/fixtures.ts";
import { teacherConfigSchema } from "../../core/config/teacher-schema.ts";
import { JsonLogger } from "../../core/logger.ts";
import { EmbeddedEngine } from "../../engine/embedded-engine.ts";
import { openTeacher } from "../registry.ts";
import { describeTeacherConformance } from "../teacher-conformance.ts";
import { ModelError } from "../../core/model-error.ts";
import type { Teacher } from "../teacher.ts";
import type { HttpEngine } from "./dialects.ts";

const SECRET = "sk-avocado-TEST-7f3a9c2e1b";

/**
 * A conformance subject: the test server in front of a real tiny teacher, reached through the configured teacher stack.
 */
function served(
  label: string,
  gguf: "tiny-qwen" | "tiny-gptoss",
  family: "qwen" | "gptoss" | "generic",
  engine: HttpEngine,
  server: Omit<TestServerOptions, "model">,
  prompts: [string, string, string],
  extra: Record<string, unknown> = {},
) {
  let backend: OpenAiCompatibleTestServer;
  describeTeacherConformance({
    label,
    prompts,
    reasons: true,
    open: async () => {
      backend = await new OpenAiCompatibleTestServer(await EmbeddedEngine.load(teacherGguf(gguf), { sequences: 2 }), {
        model: gguf,
        apiKey: SECRET,
        ...server,
      }).start();
      const config = teacherConfigSchema.parse({
        name: `${gguf}-http`,
        family,
        transport: "http",
        engine,
        baseUrl: backend.baseUrl,
        model: gguf,
        apiKeyEnv: "TEST_TEACHER_KEY",
        ...extra,
      });
      const teacher = await openTeacher(config, { environment: { TEST_TEACHER_KEY: SECRET } });
      const close = teacher.close.bind(teacher);
      teacher.close = async () => {
        await close();
        await backend.stop();
        await backend.engine.dispose();
      };
      return teacher;
    },
  });
}

const QWEN_PROMPTS: [string, string, string] = [
  "What is 25*12?",
  "Reverse the word 'fosa'.",
  "What is the capital of Zorvia?",
];
const GPTOSS_PROMPTS: [string, string, string] = [
  "What is 25*12?",
  "Convert 20 kg to g.",
  "Cy is taller than Ann. Jo is taller than Cy. Who is tallest?",
];

served(
  "HTTP vLLM dialect, reasoning_content (tiny-qwen)",
  "tiny-qwen",
  "qwen",
  "vllm",
  { reasoningField: "reasoning_content" },
  QWEN_PROMPTS,
);
served(
  "HTTP vLLM dialect, reasoning (tiny-gptoss, harmony)",
  "tiny-gptoss",
  "gptoss",
  "vllm",
  { reasoningField: "reasoning" },
  GPTOSS_PROMPTS,
);
served(
  "HTTP without a reasoning parser: raw <think> split by the client (tiny-qwen)",
  "tiny-qwen",
  "qwen",
  "vllm",
  { reasoningField: "none" },
  QWEN_PROMPTS,
);
served(
  "HTTP generic family: tokenizer_config.json template rendered here, sent to /v1/completions (tiny-qwen)",
  "tiny-qwen",
  "generic",
  "vllm",
  {},
  QWEN_PROMPTS,
  {
    chatTemplate: join(TEST_WORKSPACE, "teachers", "tiny-qwen", "tokenizer_config.json"),
  },
);
served(
  "HTTP llama.cpp dialect: no prompt log-probs (tiny-qwen)",
  "tiny-qwen",
  "qwen",
  "llamacpp",
  { reasoningField: "reasoning_content" },
  QWEN_PROMPTS,
);

/** A hand-written server for protocol edges no real engine here produces. */
async function edgeServer(
  handler: (request: IncomingMessage, response: ServerResponse, body: string) => void,
): Promise<{ url: string; server: Server; bodies: unknown[] }> {
  const bodies: unknown[] = [];
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (c: Buffer) => chunks.push(c));
    request.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      try {
        bodies.push(JSON.parse(body));
      } catch {
        bodies.push(body);
      }
      handler(request, response, body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, server, bodies };
}

const stop = (server: Server) => {
  server.closeAllConnections();
  return new Promise<void>((resolve) => server.close(() => resolve()));
};

const sse = (value: unknown) => `data: ${JSON.stringify(value)}\n\n`;
const chunk = (delta: Record<string, string>, finish: string | null = null) =>
  sse({ id: "x", object: "chat.completion.chunk", model: "m", choices: [{ index: 0, delta, finish_reason: finish }] });

describe("HttpTeacher failures: a clear typed error, no hang, no key in any message or log", () => {
  const lines: string[] = [];
  const logger = new JsonLogger((text) => lines.push(...text.trimEnd().split("\n")), "debug");
  const errors: ModelError[] = [];

  async function teacherAt(baseUrl: string, extra: Record<string, unknown> = {}): Promise<Teacher> {
    const config = teacherConfigSchema.parse({
      name: "edge",
      family: "qwen",
      transport: "http",
      engine: "vllm",
      baseUrl,
      model: "m",
      apiKeyEnv: "EDGE_KEY",
      headers: { "X-Api-Token": `${SECRET}-header` },
      limits: { retries: 0, timeoutMs: 5_000 },
      ...extra,
    });
    return openTeacher(config, { environment: { EDGE_KEY: SECRET }, logger });
  }

  async function failure(promise: Promise<unknown>): Promise<ModelError> {
    const error = await promise.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ModelError);
    errors.push(error as ModelError);
    logger.log("error", "test.failure", { error: error as Error });
    return error as ModelError;
  }

  const ask = { messages: [{ role: "user" as const, content: "hi" }], maxTokens: 8 };

  it("an unreachable URL is 'unreachable'", async () => {
    const probe = await edgeServer(() => undefined);
    const url = probe.url;
    await stop(probe.server);
    const error = await failure((await teacherAt(url)).generate(ask));
    expect(error.kind).toBe("unreachable");
    expect(error.message).toMatch(/ECONNREFUSED/);
  });

  it("a TLS failure is 'tls': https to a plain-HTTP port, and a self-signed certificate", async () => {
    const plain = await edgeServer((_request, response) => response.end("{}"));
    const error = await failure((await teacherAt(plain.url.replace("http:", "https:"))).generate(ask));
    expect(error.kind).toBe("tls");
    await stop(plain.server);

    const folder = scratchFolder("tls");
    mkdirSync(folder, { recursive: true });
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        join(folder, "key.pem"),
        "-out",
        join(folder, "cert.pem"),
        "-days",
        "1",
        "-subj",
        "/CN=localhost",
      ],
      { stdio: "ignore" },
    );
    const https = createHttpsServer(
      { key: readFileSync(join(folder, "key.pem")), cert: readFileSync(join(folder, "cert.pem")) },
      (_request, response) => response.end("{}"),
    );
    await new Promise<void>((resolve) => https.listen(0, "127.0.0.1", resolve));
    const selfSigned = await failure(
      (await teacherAt(`https://127.0.0.1:${(https.address() as AddressInfo).port}/v1`)).generate(ask),
    );
    expect(selfSigned.kind).toBe("tls");
    expect(selfSigned.message).toMatch(/certificate/i);
    https.closeAllConnections();
    https.close();
  });

  it("a non-JSON body is 'bad-response', with the start of the body", async () => {
    const edge = await edgeServer((_request, response) =>
      response.writeHead(200, { "content-type": "text/html" }).end("<html>502 Bad Gateway</html>"),
    );
    const error = await failure((await teacherAt(edge.url)).generate(ask));
    expect(error.kind).toBe("bad-response");
    expect(error.message).toMatch(/not JSON.*<html>/);
    await stop(edge.server);
  });

  it("JSON that is not a chat completion is 'bad-response'", async () => {
    const edge = await edgeServer((_request, response) => response.end(JSON.stringify({ choices: [] })));
    expect((await failure((await teacherAt(edge.url)).generate(ask))).kind).toBe("bad-response");
    await stop(edge.server);
  });

  it("a response larger than maxResponseBytes is refused", async () => {
    const edge = await edgeServer((_request, response) =>
      response.end(JSON.stringify({ choices: [{ message: { content: "x".repeat(20_000) }, finish_reason: "stop" }] })),
    );
    const error = await failure((await teacherAt(edge.url, { maxResponseBytes: 4096 })).generate(ask));
    expect(error.kind).toBe("bad-response");
    expect(error.message).toMatch(/larger than 4096 bytes/);
    await stop(edge.server);
  });

  it("a stream cut off mid-way is 'truncated-stream' (socket destroyed, or closed without [DONE])", async () => {
    const destroyed = await edgeServer((_request, response) => {
      response.writeHead(200, { "content-type": "text/event-stream" });
      response.write(chunk({ content: "Hel" }));
      setTimeout(() => response.destroy(), 20);
    });
    const reading = async (teacher: Teacher) => {
      for await (const event of teacher.stream(ask)) void event;
    };
    expect((await failure(reading(await teacherAt(destroyed.url)))).kind).toBe("truncated-stream");
    await stop(destroyed.server);
    const closed = await edgeServer((_request, response) => {
      response.writeHead(200, { "content-type": "text/event-stream" });
      response.end(chunk({ content: "Hel" }));
    });
    expect((await failure(reading(await teacherAt(closed.url)))).kind).toBe("truncated-stream");
    await stop(closed.server);
  });

  it("an error event mid-stream is 'server'", async () => {
    const edge = await edgeServer((_request, response) => {
      response.writeHead(200, { "content-type": "text/event-stream" });
      response.end(chunk({ content: "Hel" }) + sse({ error: { message: "CUDA out of memory", code: 500 } }));
    });
    const error = await failure(
      (async () => {
        for await (const event of (await teacherAt(edge.url)).stream(ask)) void event;
      })(),
    );
    expect(error.kind).toBe("server");
    expect(error.message).toMatch(/CUDA out of memory/);
    await stop(edge.server);
  });

  it("an engine that never stops is bounded: max_tokens is always sent and capped, and the timeout ends the wait", async () => {
    const edge = await edgeServer((_request, response) => {
      response.writeHead(200, { "content-type": "text/event-stream" });
      const timer = setInterval(() => response.write(chunk({ content: "la " })), 5);
      response.on("close", () => clearInterval(timer));
    });
    const teacher = await teacherAt(edge.url, { maxTokens: 64, limits: { retries: 0, timeoutMs: 800 } });
    const started = Date.now();
    const error = await failure(
      (async () => {
        for await (const event of teacher.stream({ ...ask, maxTokens: 1_000_000 })) void event;
      })(),
    );
    expect(error.kind).toBe("timeout");
    expect(Date.now() - started).toBeLessThan(5_000);
    expect((edge.bodies[0] as { max_tokens: number }).max_tokens).toBe(64);
    await stop(edge.server);
  });

  it("a wrongly declared family is 'family-mismatch' (a Qwen model declared as gpt-oss or Gemma)", async () => {
    const backend = await new OpenAiCompatibleTestServer(await EmbeddedEngine.load(teacherGguf("tiny-qwen")), {
      model: "tiny-qwen",
      reasoningField: "none",
    }).start();
    try {
      for (const family of ["gptoss", "gemma"] as const) {
        const teacher = await openTeacher(
          teacherConfigSchema.parse({
            name: "liar",
            family,
            transport: "http",
            engine: "vllm",
            baseUrl: backend.baseUrl,
            model: "tiny-qwen",
            limits: { retries: 0 },
          }),
        );
        const error = await failure(
          teacher.generate({ messages: [{ role: "user", content: "What is 25*12?" }], maxTokens: 48 }),
        );
        expect(error.kind).toBe("family-mismatch");
        expect(error.message).toMatch(new RegExp(`declared family '${family}'.*'qwen'`));
      }
    } finally {
      await backend.stop();
      await backend.engine.dispose();
    }
  });

  it("401 and 5xx bodies that echo the key are redacted; retries are logged without it", async () => {
    let calls = 0;
    const edge = await edgeServer((request, response) => {
      calls++;
      const auth = request.headers.authorization ?? "";
      if (calls === 1)
        return response
          .writeHead(401, { "content-type": "application/json" })
          .end(
            JSON.stringify({ error: { message: `invalid key ${auth} / ${String(request.headers["x-api-token"])}` } }),
          );
      response.writeHead(500).end(`upstream failed for ${auth}`);
    });
    const auth = await failure((await teacherAt(edge.url)).generate(ask));
    expect(auth.kind).toBe("auth");
    expect(auth.message).toMatch(/invalid key Bearer \[redacted\]/);
    const teacher = await teacherAt(edge.url, { limits: { retries: 2, backoffMs: 1, timeoutMs: 5_000 } });
    const server = await failure(teacher.generate(ask));
    expect(server.kind).toBe("server");
    expect(calls).toBe(4);
    expect(lines.filter((l) => l.includes('"teacher.retry"')).length).toBe(2);
    await stop(edge.server);
  });

  it("health reports an unreachable server without throwing", async () => {
    const probe = await edgeServer(() => undefined);
    await stop(probe.server);
    const health = await (await teacherAt(probe.url)).health();
    expect(health.ok).toBe(false);
    expect(health.detail).toMatch(/cannot reach/);
  });

  afterAll(() => {
    // The key, the secret header and their JSON-escaped forms appear nowhere: not in messages, stacks, causes'
    // messages, or the log.
    const everything = [
      ...lines,
      ...errors.flatMap((e) => [e.message, e.stack ?? "", String((e.cause as Error | undefined)?.message ?? "")]),
    ].join("\n");
    expect(lines.length).toBeGreaterThan(5);
    expect(everything).not.toContain(SECRET);
  });
});
