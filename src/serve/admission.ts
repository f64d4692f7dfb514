import type { FastifyReply, FastifyRequest } from "fastify";
import { Cancel } from "../core/cancel.ts";
import type { ServeConfig } from "../core/config/serve-schema.ts";
import { ContextLengthError, errorMessage, InputError } from "../core/errors.ts";
import type { Authenticated, KeyAuthenticator } from "./authentication.ts";
import type { ExtractionMonitor } from "./extraction.ts";
import { ApiError } from "./http/api-error.ts";
import { contextLengthError } from "./http/error-mapping.ts";
import { checkJsonSchema, maxTokensOf, parseBody, promptBytes } from "./http/request-checks.ts";
import {
  chatRequestSchema,
  completionRequestSchema,
  messageText,
  type ChatRequest,
  type CompletionRequest,
} from "./http/request-schemas.ts";
import type { Lease, Limiter, LimitScope } from "./limits/limiter.ts";
import type { ApiMetrics } from "./metrics.ts";
import type { GenerationRequest, ServedModel } from "./models/served-model.ts";
import type { Store } from "./store/store.ts";

/**
 * Past this many bytes (~4 ms of tokenizing), a prompt's credit is checked before it is tokenized, and a body
 * from an org with no credit is refused before it is read.
 */
export const LARGE_PROMPT_BYTES = 16 * 1024;

/** A request let in: who asks, for what, its generation as the model will get it, and its slots in the limits. */
export interface Admitted {
  started: number;
  auth: Authenticated;
  body: ChatRequest | CompletionRequest;
  model: ServedModel;
  generation: GenerationRequest;
  n: number;
  stream: boolean;
  maxTokens: number;
  /** The prompt's exact tokens when it was small enough to count before the limits. */
  early: number | undefined;
  /** The fewest tokens the prompt can be (from its size alone). */
  fewest: number;
  lease: Lease;
}

export interface AdmissionDependencies {
  config: ServeConfig;
  store: Store;
  limiter: Limiter;
  models: Map<string, ServedModel>;
  keys: KeyAuthenticator;
  metrics: ApiMetrics;
  extraction: ExtractionMonitor | undefined;
}

/**
 * Who may ask what, cheapest check first: the key, the request's fields and the plan's log-prob policy, the
 * prompt's size against the context, the limits (with the prompt's exact count when it is small), and for a large
 * body from an org with no credit, a refusal on its headers.
 */
export class Admission {
  constructor(private readonly deps: AdmissionDependencies) {}

  modelFor(auth: Authenticated, name: string): ServedModel {
    const model = this.deps.models.get(name);
    if (!model)
      throw new ApiError(404, `The model '${name}' does not exist`, { code: "model_not_found", param: "model" });
    if (auth.scopes && !auth.scopes.includes(name))
      throw new ApiError(403, `this key may not use '${name}'`, { code: "model_not_allowed", param: "model" });
    return model;
  }

  private limitScopes(auth: Authenticated): LimitScope[] {
    const { extraction, config } = this.deps;
    // The automatic throttle of keys whose extraction score crossed the threshold.
    if (extraction && extraction.score(auth.key.id) >= config.extraction.threshold)
      return [...auth.limits, { id: `throttle:${auth.key.id}`, rpm: config.extraction.throttleRpm }];
    return auth.limits;
  }

  /** Lets a request in, or throws the ApiError that refuses it. */
  async admit(route: "chat" | "completions", request: FastifyRequest): Promise<Admitted> {
    const { keys, limiter, metrics } = this.deps;
    const started = performance.now();
    const auth = await keys.authenticate(request);
    const body: ChatRequest | CompletionRequest =
      route === "chat" ? parseBody(chatRequestSchema, request.body) : parseBody(completionRequestSchema, request.body);
    const model = this.modelFor(auth, body.model);
    const chat = route === "chat" ? (body as ChatRequest) : undefined;
    const text = route === "completions" ? (body as CompletionRequest) : undefined;
    const maxTokens = maxTokensOf(body, chat, model);
    const n = body.n ?? 1;
    const stream = body.stream === true;
    if (text?.echo) throw new ApiError(422, "echo is not supported", { code: "unsupported", param: "echo" });
    // Protecting the closed model: log-probs only as the plan allows.
    const topLogprobs = chat ? (chat.logprobs ? (chat.top_logprobs ?? 0) : undefined) : (text?.logprobs ?? undefined);
    if (topLogprobs !== undefined && (auth.plan.topLogprobs === 0 || topLogprobs > auth.plan.topLogprobs)) {
      throw new ApiError(
        403,
        auth.plan.topLogprobs === 0
          ? "logprobs are not available on this key's plan"
          : `top_logprobs is limited to ${auth.plan.topLogprobs} on this key's plan`,
        { code: "logprobs_not_allowed", param: "top_logprobs" },
      );
    }
    const abort = new Cancel();
    // One object of a fixed shape, no spreads (V8 copies a spread property by property, a measurable part of a
    // request's CPU): its maxTokens becomes what the hold affords once that is known.
    const generation: GenerationRequest = {
      messages: chat ? chat.messages.map((m) => ({ role: m.role, content: messageText(m.content) })) : undefined,
      prompt: chat ? undefined : text!.prompt,
      maxTokens,
      cancel: abort,
      onDelta: undefined,
      temperature: body.temperature ?? undefined,
      topP: body.top_p ?? undefined,
      presencePenalty: body.presence_penalty || undefined,
      frequencyPenalty: body.frequency_penalty || undefined,
      seed: body.seed ?? undefined,
      stop: typeof body.stop === "string" ? [body.stop] : (body.stop ?? undefined),
      topLogprobs,
      json: chat?.response_format?.type === "json_object" || chat?.response_format?.type === "json_schema",
      // Structured outputs; a json_schema without a schema is any JSON object.
      jsonSchema:
        chat?.response_format?.type === "json_schema" && chat.response_format.json_schema.schema
          ? {
              name: chat.response_format.json_schema.name,
              schema: chat.response_format.json_schema.schema,
              strict: chat.response_format.json_schema.strict,
            }
          : undefined,
    };
    if (generation.jsonSchema) {
      try {
        checkJsonSchema(generation.jsonSchema.schema);
        await model.check?.(generation);
      } catch (error) {
        if (!(error instanceof InputError)) throw error;
        throw new ApiError(422, `response_format: ${error.message}`, {
          code: "invalid_response_format",
          param: "response_format",
        });
      }
    }
    // Cheap checks before the tokenizer (which takes ~0.3 s a megabyte): the prompt's size against the context, the
    // limits, and for a large prompt the credit, so a key without credit cannot keep the server tokenizing.
    const bytes = promptBytes(generation);
    const fewest = model.minimumPromptTokens(bytes);
    if (model.contextTokens !== undefined && fewest >= model.contextTokens)
      throw contextLengthError(new ContextLengthError(fewest, model.contextTokens, true), promptParam(generation));
    // A small prompt is tokenized at once (a few milliseconds at most): the limits then take its exact count.
    const early = bytes <= LARGE_PROMPT_BYTES ? countPromptTokens(model, generation) : undefined;
    const admission = await limiter.admit(request.id, this.limitScopes(auth), (early ?? fewest) * n);
    if (!admission.ok) {
      metrics.limitHits.inc({ limit: admission.limit });
      throw new ApiError(
        429,
        `rate limit reached (${admission.limit} of ${admission.scope.split(":")[0]}); retry after ${Math.ceil(admission.retryAfterMs / 1000)} s`,
        {
          code: `rate_limit_${admission.limit}`,
          retryAfterSeconds: Math.ceil(admission.retryAfterMs / 1000),
        },
      );
    }
    return { started, auth, body, model, generation, n, stream, maxTokens, early, fewest, lease: admission.lease };
  }

  /**
   * A large body from a key whose org has no credit at all is refused on its
   * headers, before a byte of it is read, and its connection closed: reading and
   * parsing megabytes for a request that cannot be paid for is free work for an attacker.
   */
  readonly screenLargeBody = (request: FastifyRequest, reply: FastifyReply, done: (error?: Error) => void): void => {
    // A callback hook: the common case (a small body) makes no promise.
    if (!(Number(request.headers["content-length"]) > LARGE_PROMPT_BYTES)) return done();
    const screen = async () => {
      const auth = await this.deps.keys.authenticate(request);
      if ((await this.deps.store.balance(auth.key.org_id)).available > 0) return;
      this.deps.metrics.limitHits.inc({ limit: "credit" });
      throw new ApiError(402, "this key's organisation has no credit left", { code: "insufficient_credit" });
    };
    screen().then(
      () => done(),
      (error: unknown) => {
        void reply.header("connection", "close");
        done(error as Error);
      },
    );
  };
}

/** The prompt's exact tokens, refused (400) past the model's context. */
export function countPromptTokens(model: ServedModel, generation: GenerationRequest): number {
  let tokens: number;
  try {
    tokens = model.promptTokens(generation);
  } catch (error) {
    if (error instanceof ContextLengthError) throw contextLengthError(error, promptParam(generation));
    if (error instanceof InputError) throw new ApiError(400, error.message, { code: "invalid_prompt" });
    throw new ApiError(422, `the prompt cannot be tokenized (${errorMessage(error)})`, { code: "invalid_prompt" });
  }
  if (model.contextTokens !== undefined && tokens >= model.contextTokens)
    throw contextLengthError(new ContextLengthError(tokens, model.contextTokens), promptParam(generation));
  return tokens;
}

/** The field a prompt came in: a chat's messages, or a text completion's prompt. */
function promptParam(generation: GenerationRequest): "messages" | "prompt" {
  return generation.prompt === undefined ? "messages" : "prompt";
}
