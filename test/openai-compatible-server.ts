import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Token } from "node-llama-cpp";
import { z } from "zod";
import type { ChatMessage, ChatResult, EmbeddedEngine, TokenLogprob } from "../src/engine/embedded-engine.ts";

/**
 * A small OpenAI-compatible server in front of a real model (the embedded
 * engine), speaking vLLM's documented dialect: /v1/models, /v1/chat/completions
 * (stream and not, usage, logprobs/top_logprobs ≤ 20, chat_template_kwargs,
 * reasoning_effort, reasoning in `reasoning_content` or `reasoning`, or left in
 * the content as a server without a reasoning parser does), /tokenize, and
 * /v1/completions with `prompt_logprobs` over token ids. The tests' stand-in for
 * vLLM until `avocado serve` exists; every answer comes from the model.
 */
export interface TestServerOptions {
  model: string;
  /** Where reasoning goes: vLLM ≤ 0.10 `reasoning_content`, ≥ 0.11 `reasoning`, or "none" (raw in the content). */
  reasoningField?: "reasoning_content" | "reasoning" | "none";
  /** A bearer key the server requires. */
  apiKey?: string;
}

const messageSchema = z.object({ role: z.enum(["system", "developer", "user", "assistant"]), content: z.string() });
const chatSchema = z.object({
  model: z.string(),
  messages: z.array(messageSchema).min(1),
  max_tokens: z.number().int().min(1).optional(),
  max_completion_tokens: z.number().int().min(1).optional(),
  temperature: z.number().min(0).optional(),
  top_p: z.number().optional(),
  seed: z.number().int().optional(),
  stop: z.union([z.string(), z.array(z.string())]).optional(),
  stream: z.boolean().optional(),
  stream_options: z
    .object({ include_usage: z.boolean().optional(), continuous_usage_stats: z.boolean().optional() })
    .optional(),
  logprobs: z.boolean().optional(),
  top_logprobs: z.number().int().min(0).max(20).optional(),
  chat_template_kwargs: z
    .object({ enable_thinking: z.boolean().optional(), reasoning_effort: z.enum(["low", "medium", "high"]).optional() })
    .optional(),
  reasoning_effort: z.enum(["low", "medium", "high"]).optional(),
});
const tokenizeSchema = z.union([
  z.object({
    model: z.string(),
    messages: z.array(messageSchema),
    add_generation_prompt: z.boolean().optional(),
    chat_template_kwargs: chatSchema.shape.chat_template_kwargs,
  }),
  z.object({ model: z.string(), prompt: z.string(), add_special_tokens: z.boolean().optional() }),
]);
const completionSchema = z.object({
  model: z.string(),
  prompt: z.array(z.number().int().nonnegative()).min(1),
  max_tokens: z.number().int().min(1).optional(),
  prompt_logprobs: z.number().int().min(0).max(20),
});
const textCompletionSchema = z.object({
  model: z.string(),
  prompt: z.string().min(1),
  max_tokens: z.number().int().min(1).optional(),
  temperature: z.number().min(0).optional(),
  top_p: z.number().optional(),
  seed: z.number().int().optional(),
  stop: z.union([z.string(), z.array(z.string())]).optional(),
  stream: z.boolean().optional(),
  stream_options: z
    .object({ include_usage: z.boolean().optional(), continuous_usage_stats: z.boolean().optional() })
    .optional(),
  logprobs: z.number().int().min(0).max(20).optional(),
});

class HttpFailure extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function readJson(request: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    throw new HttpFailure(400, "the body is not JSON");
  }
}

function parse<T extends z.ZodType>(schema: T, value: unknown): z.infer<T> {
  const result = schema.safeParse(value);
  if (!result.success)
    throw new HttpFailure(400, result.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; "));
  return result.data;
}

function send(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
}

const bytes = (text: string) => [...Buffer.from(text, "utf8")];

function chatLogprobs(logprobs: TokenLogprob[] | undefined) {
  return logprobs
    ? {
        content: logprobs.map((t) => ({
          token: t.text,
          logprob: t.logprob,
          bytes: bytes(t.text),
          top_logprobs: t.top.map((o) => ({ token: o.text, logprob: o.logprob, bytes: bytes(o.text) })),
        })),
      }
    : null;
}

export class OpenAiCompatibleTestServer {
  private server: Server | undefined;
  private nextId = 0;
  /** Requests received, by path (for tests that check what a client sent). */
  readonly received: { path: string; body: unknown }[] = [];

  constructor(
    readonly engine: EmbeddedEngine,
    readonly options: TestServerOptions,
  ) {}

  get baseUrl(): string {
    return `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}/v1`;
  }

  async start(): Promise<this> {
    this.server = createServer((request, response) => {
      this.handle(request, response).catch((error: unknown) => {
        if (response.headersSent) return response.destroy();
        const status = error instanceof HttpFailure ? error.status : 500;
        send(response, status, {
          object: "error",
          message: error instanceof Error ? error.message : String(error),
          type: status === 400 ? "BadRequestError" : "InternalServerError",
          code: status,
        });
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    return this;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()));
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const path = new URL(request.url ?? "/", "http://localhost").pathname;
    if (this.options.apiKey && request.headers.authorization !== `Bearer ${this.options.apiKey}`)
      throw new HttpFailure(401, "invalid API key");
    if (request.method === "GET" && path === "/v1/models")
      return send(response, 200, {
        object: "list",
        data: [{ id: this.options.model, object: "model", owned_by: "avocado-test" }],
      });
    if (request.method !== "POST") throw new HttpFailure(404, `no route ${request.method} ${path}`);
    const body = await readJson(request);
    this.received.push({ path, body });
    if (path === "/v1/chat/completions") return this.chat(parse(chatSchema, body), request, response);
    if (path === "/tokenize") return this.tokenize(parse(tokenizeSchema, body), response);
    if (path === "/v1/completions") {
      if (body && typeof body === "object" && typeof (body as { prompt?: unknown }).prompt === "string")
        return this.textCompletion(parse(textCompletionSchema, body), response);
      return this.promptLogprobs(parse(completionSchema, body), response);
    }
    throw new HttpFailure(404, `no route POST ${path}`);
  }

  private checkModel(model: string): void {
    if (model !== this.options.model) throw new HttpFailure(404, `The model \`${model}\` does not exist.`);
  }

  private messages(messages: z.infer<typeof messageSchema>[]): ChatMessage[] {
    return messages.map((m) => ({ role: m.role === "developer" ? "system" : m.role, content: m.content }));
  }

  /** Without a reasoning parser the client sees the model's raw text, markers included. */
  private rawText(reasoning: string, content: string): string {
    if (reasoning === "" && this.engine.family !== "gptoss") return content;
    if (this.engine.family === "gptoss")
      return `<|channel|>analysis<|message|>${reasoning}<|end|><|start|>assistant<|channel|>final<|message|>${content}`;
    return `<think>\n${reasoning}\n</think>\n\n${content}`;
  }

  private async chat(
    body: z.infer<typeof chatSchema>,
    request: IncomingMessage,
    response: ServerResponse,
  ): Promise<void> {
    this.checkModel(body.model);
    const abort = new AbortController();
    response.on("close", () => abort.abort(new Error("client disconnected")));
    const field = this.options.reasoningField ?? "reasoning_content";
    const id = `chatcmpl-${++this.nextId}`;
    const created = Math.floor(Date.now() / 1000);
    const chunk = (choices: unknown[], usage?: unknown) =>
      `data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model: body.model, choices, ...(usage ? { usage } : {}) })}\n\n`;
    if (body.stream) {
      response.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      response.write(
        chunk([{ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }]),
      );
    }
    let sawContent = false;
    let inThought = false;
    // vLLM's continuous_usage_stats: every event carries the usage so far.
    const continuous = body.stream_options?.continuous_usage_stats === true;
    const promptLength = continuous
      ? this.engine.promptTokens(this.messages(body.messages), { thinking: body.chat_template_kwargs?.enable_thinking })
          .length
      : 0;
    let generated = 0;
    const running = (tokens: number) =>
      continuous
        ? {
            prompt_tokens: promptLength,
            completion_tokens: (generated += tokens),
            total_tokens: promptLength + generated,
          }
        : undefined;
    let result: ChatResult;
    try {
      result = await this.engine.chat({
        messages: this.messages(body.messages),
        maxTokens: body.max_completion_tokens ?? body.max_tokens ?? 256,
        temperature: body.temperature ?? 1,
        topP: body.top_p,
        seed: body.seed,
        stop: typeof body.stop === "string" ? [body.stop] : body.stop,
        thinking: body.chat_template_kwargs?.enable_thinking,
        reasoningEffort: body.reasoning_effort ?? body.chat_template_kwargs?.reasoning_effort,
        topLogprobs: body.logprobs ? (body.top_logprobs ?? 0) : undefined,
        signal: abort.signal,
        onChunk: body.stream
          ? (part) => {
              let delta: Record<string, string>;
              if (field === "none") {
                // Re-create the raw markers around the thought, as a server without a reasoning parser streams them.
                const harmony = this.engine.family === "gptoss";
                let text = part.text;
                if (part.kind === "reasoning" && !inThought && !sawContent) {
                  text = (harmony ? "<|channel|>analysis<|message|>" : "<think>\n") + text;
                  inThought = true;
                } else if (part.kind === "content" && !sawContent) {
                  if (inThought)
                    text = (harmony ? "<|end|><|start|>assistant<|channel|>final<|message|>" : "\n</think>\n\n") + text;
                  else if (harmony) text = "<|channel|>final<|message|>" + text;
                  inThought = false;
                }
                delta = { content: text };
              } else delta = part.kind === "reasoning" ? { [field]: part.text } : { content: part.text };
              if (part.kind === "content") sawContent = true;
              response.write(chunk([{ index: 0, delta, logprobs: null, finish_reason: null }], running(part.tokens)));
            }
          : undefined,
      });
    } catch (error) {
      if (body.stream) return void response.end();
      throw error;
    }
    if (abort.signal.aborted) return;
    const usage = {
      prompt_tokens: result.usage.promptTokens,
      completion_tokens: result.usage.completionTokens,
      total_tokens: result.usage.promptTokens + result.usage.completionTokens,
    };
    const finish = result.finishReason === "length" ? "length" : "stop";
    if (body.stream) {
      response.write(chunk([{ index: 0, delta: {}, logprobs: chatLogprobs(result.logprobs), finish_reason: finish }]));
      if (body.stream_options?.include_usage) response.write(chunk([], usage));
      response.end("data: [DONE]\n\n");
      return;
    }
    const message: Record<string, unknown> = {
      role: "assistant",
      content: field === "none" ? this.rawText(result.reasoning, result.content) : result.content,
    };
    if (field !== "none") message[field] = result.reasoning === "" ? null : result.reasoning;
    send(response, 200, {
      id,
      object: "chat.completion",
      created,
      model: body.model,
      choices: [{ index: 0, message, logprobs: chatLogprobs(result.logprobs), finish_reason: finish }],
      usage,
    });
  }

  private tokenize(body: z.infer<typeof tokenizeSchema>, response: ServerResponse): void {
    this.checkModel(body.model);
    const tokens =
      "messages" in body
        ? this.engine.promptTokens(this.messages(body.messages), {
            thinking: body.chat_template_kwargs?.enable_thinking,
            reasoningEffort: body.chat_template_kwargs?.reasoning_effort,
          })
        : this.engine.tokenize(body.prompt, true);
    send(response, 200, { count: tokens.length, max_model_len: 128, tokens });
  }

  /** Legacy /v1/completions on a rendered prompt (what the generic family sends), stream and not. */
  private async textCompletion(body: z.infer<typeof textCompletionSchema>, response: ServerResponse): Promise<void> {
    this.checkModel(body.model);
    const abort = new AbortController();
    response.on("close", () => abort.abort(new Error("client disconnected")));
    const id = `cmpl-${++this.nextId}`;
    const created = Math.floor(Date.now() / 1000);
    const event = (choices: unknown[], usage?: unknown) =>
      `data: ${JSON.stringify({ id, object: "text_completion", created, model: body.model, choices, ...(usage ? { usage } : {}) })}\n\n`;
    if (body.stream) response.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    const promptLength = this.engine.tokenize(body.prompt, true).length;
    let generated = 0;
    const running = (tokens: number) =>
      body.stream_options?.continuous_usage_stats
        ? {
            prompt_tokens: promptLength,
            completion_tokens: (generated += tokens),
            total_tokens: promptLength + generated,
          }
        : undefined;
    const result = await this.engine.complete({
      prompt: body.prompt,
      maxTokens: body.max_tokens ?? 16,
      temperature: body.temperature ?? 1,
      topP: body.top_p,
      seed: body.seed,
      stop: typeof body.stop === "string" ? [body.stop] : body.stop,
      topLogprobs: body.logprobs,
      signal: abort.signal,
      onText: body.stream
        ? (text, tokens) =>
            response.write(event([{ index: 0, text, logprobs: null, finish_reason: null }], running(tokens)))
        : undefined,
    });
    if (abort.signal.aborted) return;
    const usage = {
      prompt_tokens: result.usage.promptTokens,
      completion_tokens: result.usage.completionTokens,
      total_tokens: result.usage.promptTokens + result.usage.completionTokens,
    };
    const logprobs = result.logprobs
      ? {
          tokens: result.logprobs.map((t) => t.text),
          token_logprobs: result.logprobs.map((t) => t.logprob),
          top_logprobs: result.logprobs.map((t) => Object.fromEntries(t.top.map((o) => [o.text, o.logprob]))),
          text_offset: [],
        }
      : null;
    const finish = result.finishReason === "length" ? "length" : "stop";
    if (body.stream) {
      response.write(event([{ index: 0, text: "", logprobs, finish_reason: finish }]));
      if (body.stream_options?.include_usage) response.write(event([], usage));
      response.end("data: [DONE]\n\n");
      return;
    }
    send(response, 200, {
      id,
      object: "text_completion",
      created,
      model: body.model,
      choices: [{ index: 0, text: result.text, logprobs, finish_reason: finish }],
      usage,
    });
  }

  /**
   * vLLM's prompt_logprobs: for each prompt position after the first, the actual token's entry plus the top-k, keyed by
   * token id.
   */
  private async promptLogprobs(body: z.infer<typeof completionSchema>, response: ServerResponse): Promise<void> {
    this.checkModel(body.model);
    const [first, ...rest] = body.prompt as Token[];
    const scored = await this.engine.score([first!], rest, Math.max(body.prompt_logprobs, 1));
    const entries = scored.map((t) => {
      const entry: Record<string, { logprob: number; rank: number; decoded_token: string }> = {};
      t.top
        .slice(0, body.prompt_logprobs)
        .forEach((o, i) => (entry[String(o.token)] = { logprob: o.logprob, rank: i + 1, decoded_token: o.text }));
      const rank = t.top.findIndex((o) => o.token === t.token);
      entry[String(t.token)] = {
        logprob: t.logprob,
        rank: rank >= 0 ? rank + 1 : body.prompt_logprobs + 1,
        decoded_token: t.text,
      };
      return entry;
    });
    send(response, 200, {
      id: `cmpl-${++this.nextId}`,
      object: "text_completion",
      model: body.model,
      choices: [{ index: 0, text: "", finish_reason: "length", logprobs: null, prompt_logprobs: [null, ...entries] }],
      usage: { prompt_tokens: body.prompt.length, completion_tokens: 1, total_tokens: body.prompt.length + 1 },
    });
  }
}
