import { connect, createServer, type Server, type Socket } from "node:net";
import type OpenAI from "openai";
import { ENDLESS_QWEN_PROMPT } from "./fixtures.ts";

/**
 * A TCP relay in front of one of the machine's real services (Redis,
 * PostgreSQL) that can be cut and restored on the same port: a network
 * partition, while the service itself keeps running with its state.
 */
export class Partition {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  port = 0;
  /**
   * While above 0, what clients send reaches the service this much later: a slow service, without stalling anyone
   * else's connection to it.
   */
  delayMs = 0;

  constructor(private readonly target: { host: string; port: number }) {}

  /** Starts relaying (again, on the same port after a cut). */
  async up(): Promise<void> {
    this.server = createServer((client) => {
      const service = connect(this.target.port, this.target.host);
      for (const socket of [client, service]) {
        this.sockets.add(socket);
        socket.on("error", () => undefined);
        socket.on("close", () => {
          this.sockets.delete(socket);
          client.destroy();
          service.destroy();
        });
      }
      // Client to service through a queue, so that `delayMs` can make the service slow to hear (in order); back as it
      // comes.
      let queue = Promise.resolve();
      client.on("data", (chunk: Buffer) => {
        const delay = this.delayMs;
        queue = queue.then(async () => {
          if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
          if (!service.destroyed) service.write(chunk);
        });
      });
      client.on("end", () => void queue.then(() => service.end()));
      service.pipe(client);
    });
    await new Promise<void>((resolve) => this.server!.listen(this.port, "127.0.0.1", resolve));
    this.port = (this.server.address() as { port: number }).port;
  }

  /** Drops every relayed connection and refuses new ones until `up`. */
  async cut(): Promise<void> {
    if (!this.server?.listening) return;
    const closed = new Promise((resolve) => this.server!.close(resolve));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  /** `url` with its host and port replaced by the relay's. */
  relayed(url: string): string {
    const parsed = new URL(url);
    parsed.hostname = "127.0.0.1";
    parsed.port = String(this.port);
    return parsed.toString();
  }
}

/** Waits (polling) until `condition` holds, or fails after `ms`. */
export async function until(condition: () => boolean, ms = 10_000): Promise<void> {
  for (const stop = Date.now() + ms; !condition();) {
    if (Date.now() > stop) throw new Error("timed out waiting");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A service's host and port from its URL. */
export function targetOf(url: string, defaultPort: number): { host: string; port: number } {
  const parsed = new URL(url);
  return { host: parsed.hostname, port: Number(parsed.port || defaultPort) };
}

/**
 * Streams a long completion of `model` (the tiny Qwen's endless prompt, 200 tokens) and cuts `partition` at its second
 * event, reading the stream to its end: the usage its last event reports (the client gets its whole answer either way).
 */
export async function streamCutMidway(
  client: OpenAI,
  model: string,
  partition: Partition,
): Promise<{ prompt_tokens: number; completion_tokens: number } | undefined> {
  const stream = await client.completions.create({
    model,
    prompt: ENDLESS_QWEN_PROMPT,
    max_tokens: 200,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  });
  let chunks = 0;
  let usage: { prompt_tokens: number; completion_tokens: number } | undefined;
  for await (const chunk of stream) {
    if (++chunks === 2) await partition.cut();
    usage = chunk.usage ?? usage;
  }
  return usage;
}
