import { Counter, Gauge, Histogram, Registry } from "prom-client";

/** Prometheus metrics of one API server (its own registry, so tests can run several). */
export class ApiMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: "avocado_requests_total",
    help: "API requests by route, model and status",
    labelNames: ["route", "model", "status"],
    registers: [this.registry],
  });
  readonly latency = new Histogram({
    name: "avocado_request_duration_seconds",
    help: "Time to the full response (non-stream) or to the end of the stream",
    labelNames: ["route", "stream"],
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60],
    registers: [this.registry],
  });
  readonly firstToken = new Histogram({
    name: "avocado_time_to_first_token_seconds",
    help: "Time to the first streamed token",
    buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5],
    registers: [this.registry],
  });
  readonly tokens = new Counter({
    name: "avocado_tokens_total",
    help: "Metered tokens by model and kind (prompt, completion)",
    labelNames: ["model", "kind"],
    registers: [this.registry],
  });
  readonly spend = new Counter({
    name: "avocado_spend_micros_total",
    help: "Settled charges in micro-units by model",
    labelNames: ["model"],
    registers: [this.registry],
  });
  readonly limitHits = new Counter({
    name: "avocado_limit_hits_total",
    help: "Requests refused by a limit (rpm, tpm, concurrency, credit), or streams cut because their client stopped reading (stream_buffer)",
    labelNames: ["limit"],
    registers: [this.registry],
  });

  /** Settlements the store could not take yet (being retried): should be 0; more means the store is failing. */
  readonly pendingSettlements: Gauge = new Gauge({
    name: "avocado_settlements_pending",
    help: "Settlements the store could not take yet, being retried",
    registers: [this.registry],
    collect: (): void => this.pendingSettlements.set(this.pendingCount()),
  });
  private pendingCount = () => 0;

  /** Where the pending settlements gauge reads its value, at each scrape. */
  countPendingSettlements(read: () => number): void {
    this.pendingCount = read;
  }

  /** Labelled children, looked up once per label set instead of hashing the labels on every request. */
  private readonly children = new Map<
    string,
    {
      requests: Counter.Internal;
      latency: Histogram.Internal<string>;
      prompt: Counter.Internal;
      completion: Counter.Internal;
      spend: Counter.Internal;
    }
  >();

  /**
   * A request answered with an error before it was admitted (bad input, a bad key, a limit, no credit, an
   * unavailable store): counted by route and status, without a model (a client's model name is not a label).
   */
  refused(route: string, status: number): void {
    this.requests.labels(route, "", String(status)).inc();
  }

  /** One finished request: its count, tokens, spend and latency. */
  finished(
    route: string,
    model: string,
    stream: boolean,
    status: string,
    tokens: { prompt: number; completion: number },
    spendMicros: number,
    seconds: number,
  ): void {
    const id = `${route}\u0000${model}\u0000${stream}\u0000${status}`;
    let child = this.children.get(id);
    if (!child) {
      child = {
        requests: this.requests.labels(route, model, status),
        latency: this.latency.labels(route, String(stream)),
        prompt: this.tokens.labels(model, "prompt"),
        completion: this.tokens.labels(model, "completion"),
        spend: this.spend.labels(model),
      };
      this.children.set(id, child);
    }
    child.requests.inc();
    child.latency.observe(seconds);
    child.prompt.inc(tokens.prompt);
    child.completion.inc(tokens.completion);
    child.spend.inc(spendMicros);
  }
}
