import { DEFAULT_LIMITS, type TeacherLimits } from "../../core/config/teacher-schema.ts";
import { errorMessage } from "../../core/errors.ts";
import { SILENT_LOGGER, type Logger } from "../../core/logger.ts";
import { ModelError } from "../../core/model-error.ts";
import type {
  ScoreRequest,
  ScoreResult,
  Teacher,
  TeacherEvent,
  TeacherHealth,
  TeacherRequest,
  TeacherResponse,
  TeacherUsage,
} from "../teacher.ts";
import { AdaptiveLimit } from "./adaptive-limit.ts";
import { CircuitBreaker } from "./circuit-breaker.ts";
import { sleep } from "./sleep.ts";
import { TokenBucket } from "./token-bucket.ts";

export interface SchedulerOptions {
  limits?: Partial<TeacherLimits>;
  logger?: Logger;
  /** The teacher's configured reasoning defaults (a request's own choice wins). */
  defaults?: { thinking?: boolean; reasoningEffort?: TeacherRequest["reasoningEffort"] };
  /** For jitter; injectable so tests are deterministic. */
  random?: () => number;
}

export interface SchedulerStats {
  requests: number;
  attempts: number;
  retries: number;
  rateLimited: number;
  failures: number;
  inFlight: number;
  concurrencyLimit: number;
  circuit: CircuitBreaker["state"];
}

/** Prompt tokens before the engine counts them: about 4 characters a token, plus the role markers. */
function estimatePromptTokens(messages: readonly { content: string }[]): number {
  return messages.reduce((sum, m) => sum + Math.ceil(m.content.length / 4) + 4, 0);
}

/** Server-side failures count against the circuit; the caller's own mistakes and cancellations do not. */
const NEUTRAL_KINDS = new Set<ModelError["kind"]>([
  "aborted",
  "bad-request",
  "unsupported",
  "rate-limited",
  "family-mismatch",
]);

/**
 * Per-teacher scheduling around any Teacher: a concurrency limit that adapts
 * to 429/overload, RPM and TPM token buckets, a per-attempt timeout,
 * cancellation, retries with full-jitter exponential backoff that honour
 * Retry-After (this is the only layer that retries), and a circuit breaker.
 */
export class ScheduledTeacher implements Teacher {
  readonly name: string;
  readonly family: Teacher["family"];
  readonly capabilities: Teacher["capabilities"];
  readonly limits: TeacherLimits;
  private readonly concurrency: AdaptiveLimit;
  private readonly breaker: CircuitBreaker;
  private readonly rpm: TokenBucket | undefined;
  private readonly tpm: TokenBucket | undefined;
  private readonly logger: Logger;
  private readonly random: () => number;
  private readonly defaults: NonNullable<SchedulerOptions["defaults"]>;
  /** Set from Retry-After: no attempt starts before this time. */
  private pausedUntil = 0;
  private readonly counters = { requests: 0, attempts: 0, retries: 0, rateLimited: 0, failures: 0 };

  constructor(
    readonly inner: Teacher,
    options: SchedulerOptions = {},
  ) {
    this.name = inner.name;
    this.family = inner.family;
    this.capabilities = inner.capabilities;
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.concurrency = new AdaptiveLimit(this.limits.concurrency, this.limits.adaptive);
    this.breaker = new CircuitBreaker(this.limits.breakerFailures, this.limits.breakerCooldownMs);
    this.rpm = this.limits.rpm !== undefined ? new TokenBucket(this.limits.rpm) : undefined;
    this.tpm = this.limits.tpm !== undefined ? new TokenBucket(this.limits.tpm) : undefined;
    this.logger = options.logger ?? SILENT_LOGGER;
    this.random = options.random ?? Math.random;
    this.defaults = options.defaults ?? {};
  }

  private withDefaults<T extends { thinking?: boolean; reasoningEffort?: TeacherRequest["reasoningEffort"] }>(
    request: T,
  ): T {
    return {
      ...request,
      thinking: request.thinking ?? this.defaults.thinking,
      reasoningEffort: request.reasoningEffort ?? this.defaults.reasoningEffort,
    };
  }

  stats(): SchedulerStats {
    return {
      ...this.counters,
      inFlight: this.concurrency.inFlight,
      concurrencyLimit: this.concurrency.limit,
      circuit: this.breaker.state,
    };
  }

  async generate(request: TeacherRequest): Promise<TeacherResponse> {
    let response: TeacherResponse | undefined;
    for await (const event of this.run(this.withDefaults(request), false))
      if (event.type === "done") response = event.response;
    return response!;
  }

  stream(request: TeacherRequest): AsyncIterable<TeacherEvent> {
    return this.run(this.withDefaults(request), true);
  }

  async score(scoreRequest: ScoreRequest): Promise<ScoreResult> {
    const request = this.withDefaults(scoreRequest);
    const estimate = estimatePromptTokens(request.messages) + Math.ceil(request.continuation.length / 4);
    let result: ScoreResult | undefined;
    await this.attempts(request.signal, estimate, async (signal) => {
      result = await this.inner.score({ ...request, signal });
      return { promptTokens: result.promptTokens, completionTokens: result.tokens.length, reasoningTokens: 0 };
    });
    return result!;
  }

  health(signal?: AbortSignal): Promise<TeacherHealth> {
    return this.inner.health(signal);
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private async *run(request: TeacherRequest, streaming: boolean): AsyncGenerator<TeacherEvent> {
    const estimate = estimatePromptTokens(request.messages);
    const events: TeacherEvent[] = [];
    let wake: (() => void) | undefined;
    let finished = false;
    let failure: { error: unknown } | undefined;
    let yielded = false;
    // A consumer that stops reading early cancels the work.
    const local = new AbortController();
    const callerSignal = request.signal ? AbortSignal.any([request.signal, local.signal]) : local.signal;
    // The attempts run in the background and hand events over; a retry is only possible before the first event reached
    // the caller.
    const work = this.attempts(
      callerSignal,
      estimate,
      async (signal) => {
        if (!streaming) {
          const response = await this.inner.generate({ ...request, signal });
          events.push({ type: "done", response });
          wake?.();
          return response.usage;
        }
        let usage: TeacherUsage | undefined;
        for await (const event of this.inner.stream({ ...request, signal })) {
          if (event.type === "done") usage = event.response.usage;
          events.push(event);
          wake?.();
        }
        if (!usage) throw new ModelError(this.name, "truncated-stream", "the stream ended without a final response");
        return usage;
      },
      // A retry is possible until an event reached the caller; the failed attempt's unread events are dropped.
      () => {
        if (yielded) return false;
        events.length = 0;
        return true;
      },
    ).then(
      () => {
        finished = true;
        wake?.();
      },
      (error: unknown) => {
        failure = { error };
        finished = true;
        wake?.();
      },
    );
    try {
      for (;;) {
        const event = events.shift();
        if (event) {
          yielded = true;
          yield event;
          continue;
        }
        if (finished) break;
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
    } finally {
      if (!finished) local.abort(new ModelError(this.name, "aborted", "the consumer stopped reading the stream"));
      await work;
    }
    if (failure) throw failure.error;
  }

  /**
   * Runs `attempt` under the limits until it succeeds, fails for good, or the
   * retries are spent. `retryable()` lets a stream refuse a retry once output reached its caller.
   */
  private async attempts(
    callerSignal: AbortSignal | undefined,
    estimate: number,
    attempt: (signal: AbortSignal) => Promise<TeacherUsage>,
    retryable: () => boolean = () => true,
  ): Promise<void> {
    this.counters.requests++;
    for (let index = 0; ; index++) {
      if (callerSignal?.aborted) throw this.cancelled(callerSignal);
      if (!this.breaker.allow()) {
        throw new ModelError(
          this.name,
          "circuit-open",
          `the circuit is open after ${this.limits.breakerFailures} consecutive failures; next trial in ${Math.ceil(this.breaker.retryInMs() / 1000)} s`,
        );
      }
      let error: ModelError;
      try {
        await this.waitForTurn(callerSignal, estimate);
      } catch (cause) {
        this.breaker.onNeutral();
        throw callerSignal?.aborted ? this.cancelled(callerSignal) : cause;
      }
      this.counters.attempts++;
      try {
        const timeout = AbortSignal.timeout(this.limits.timeoutMs);
        const signal = callerSignal ? AbortSignal.any([callerSignal, timeout]) : timeout;
        const usage = await attempt(signal);
        this.breaker.onSuccess();
        this.concurrency.onSuccess();
        this.tpm?.adjust(usage.promptTokens + usage.completionTokens - estimate);
        return;
      } catch (cause) {
        error = this.asModelError(cause, callerSignal);
      } finally {
        this.concurrency.release();
      }
      if (error.kind === "rate-limited" || error.kind === "overloaded") {
        this.counters.rateLimited++;
        this.concurrency.onOverload();
        if (error.retryAfterMs !== undefined)
          this.pausedUntil = Math.max(this.pausedUntil, performance.now() + error.retryAfterMs);
      }
      if (NEUTRAL_KINDS.has(error.kind)) this.breaker.onNeutral();
      else {
        this.counters.failures++;
        this.breaker.onFailure();
      }
      if (!error.retryable || index >= this.limits.retries || !retryable()) throw error;
      const backoff = Math.min(this.limits.maxBackoffMs, this.limits.backoffMs * 2 ** index);
      const delay = Math.max(error.retryAfterMs ?? 0, Math.round(this.random() * backoff));
      this.counters.retries++;
      this.logger.log("warn", "teacher.retry", {
        teacher: this.name,
        attempt: index + 1,
        kind: error.kind,
        status: error.status,
        delayMs: delay,
        message: error.message,
      });
      try {
        await sleep(delay, callerSignal);
      } catch {
        throw this.cancelled(callerSignal!);
      }
    }
  }

  /** A concurrency slot (held on return), any Retry-After pause, then the RPM and TPM buckets. */
  private async waitForTurn(signal: AbortSignal | undefined, estimate: number): Promise<void> {
    await this.concurrency.acquire(signal);
    try {
      await this.pause(signal);
      await this.rpm?.take(1, signal);
      await this.tpm?.take(estimate, signal);
      // A Retry-After may have arrived while this request waited for the buckets.
      await this.pause(signal);
    } catch (error) {
      this.concurrency.release();
      throw error;
    }
  }

  private async pause(signal: AbortSignal | undefined): Promise<void> {
    for (let wait = this.pausedUntil - performance.now(); wait > 0; wait = this.pausedUntil - performance.now())
      await sleep(wait, signal);
  }

  private asModelError(error: unknown, callerSignal: AbortSignal | undefined): ModelError {
    if (callerSignal?.aborted) return this.cancelled(callerSignal);
    if (error instanceof ModelError) return error;
    if (error instanceof DOMException && error.name === "TimeoutError")
      return new ModelError(this.name, "timeout", `no answer within ${this.limits.timeoutMs} ms`);
    return new ModelError(this.name, "engine", errorMessage(error), { cause: error });
  }

  private cancelled(signal: AbortSignal): ModelError {
    const reason: unknown = signal.reason;
    return reason instanceof ModelError
      ? reason
      : new ModelError(this.name, "aborted", `request cancelled (${errorMessage(reason)})`);
  }
}
