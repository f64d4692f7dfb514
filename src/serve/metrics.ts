import { Counter, Histogram, Registry } from "prom-client";

/** Prometheus metrics of one API server (its own registry, so tests can run several). */
export class ApiMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({ name: "avocado_requests_total", help: "API requests by route, model and status", labelNames: ["route", "model", "status"], registers: [this.registry] });
  readonly latency = new Histogram({
    name: "avocado_request_duration_seconds",
    help: "Time to the full response (non-stream) or to the end of the stream",
    labelNames: ["route", "stream"],
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60],
    registers: [this.registry],
  });
  readonly firstToken = new Histogram({ name: "avocado_time_to_first_token_seconds", help: "Time to the first streamed token", buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5], registers: [this.registry] });
  readonly tokens = new Counter({ name: "avocado_tokens_total", help: "Metered tokens by model and kind (prompt, completion)", labelNames: ["model", "kind"], registers: [this.registry] });
  readonly spend = new Counter({ name: "avocado_spend_micros_total", help: "Settled charges in micro-units by model", labelNames: ["model"], registers: [this.registry] });
  readonly limitHits = new Counter({ name: "avocado_limit_hits_total", help: "Requests refused by a limit (rpm, tpm, concurrency, credit)", labelNames: ["limit"], registers: [this.registry] });
}
