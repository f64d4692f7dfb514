import { execFile, spawn, type ChildProcess } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { scratchFolder, teacherGguf, ENDLESS_QWEN_PROMPT as ENDLESS } from "../../test/fixtures.ts";
import { Partition, streamCutMidway, targetOf } from "../../test/partition.ts";
import { freshStore, POSTGRES_URL } from "../../test/stores.ts";
import { PROJECT_ROOT } from "../core/paths.ts";
import { Store } from "./store/store.ts";

const BIN = join(PROJECT_ROOT, "bin", "avocado.js");

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

function avocado(args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd, encoding: "utf8" }, (error, stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === "number" ? error.code : 1) : 0, stdout, stderr }),
    );
  });
}

/** Resolves once `child` has exited (at once if it already has). */
function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

/** Starts `avocado serve` and resolves once it listens. */
function serve(cwd: string): Promise<{ child: ChildProcess; output: () => string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, "--json", "serve"], { cwd, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    const onData = (data: Buffer) => {
      output += data.toString();
      if (output.includes('"event":"result"')) resolve({ child, output: () => output });
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", (data: Buffer) => (output += data.toString()));
    child.on("exit", (code) => reject(new Error(`avocado serve exited ${code}: ${output}`)));
  });
}

describe("avocado serve as a process: keys and billing CLI, kill -9 mid-stream, recovery", () => {
  const folder = scratchFolder("serve-process");
  let port: number;
  let server: { child: ChildProcess; output: () => string } | undefined;

  beforeAll(async () => {
    await mkdir(folder, { recursive: true });
    port = await freePort();
    await writeFile(
      join(folder, "avocado.yaml"),
      [
        "workspace: ws",
        "serve:",
        `  port: ${port}`,
        "  store: sqlite:avocado.db",
        "  plans: { default: { rpm: 600, concurrency: 4, topLogprobs: 0 } }",
        "  models:",
        "    - name: avocado-tiny",
        `      gguf: ${teacherGguf("tiny-qwen")}`,
        "      price: { inputPerMillion: 1000000, outputPerMillion: 4000000 }",
        "      maxTokens: 200",
        "",
      ].join("\n"),
    );
  });
  afterAll(async () => {
    server?.child.kill("SIGKILL");
    await rm(folder, { recursive: true, force: true });
  });

  it("creates a key and credit from the CLI, survives kill -9 mid-stream, and recovers the hold on restart", async () => {
    const created = await avocado(["--json", "keys", "create", "--org", "acme", "--name", "ci"], folder);
    expect(created.code, created.stderr).toBe(0);
    const key = (JSON.parse(created.stdout.trim().split("\n").at(-1)!) as { key: string }).key;
    expect(
      (
        await avocado(
          ["billing", "credit", "--org", "acme", "--amount", "5000000", "--idempotency-key", "pay-1"],
          folder,
        )
      ).stdout,
    ).toMatch(/^credited/);
    expect(
      (
        await avocado(
          ["billing", "credit", "--org", "acme", "--amount", "5000000", "--idempotency-key", "pay-1"],
          folder,
        )
      ).stdout,
    ).toMatch(/already credited/);

    server = await serve(folder);
    const client = new OpenAI({ apiKey: key, baseURL: `http://127.0.0.1:${port}/v1`, maxRetries: 0 });
    const done = await client.completions.create({
      model: "avocado-tiny",
      prompt: ENDLESS,
      max_tokens: 20,
      temperature: 0,
    });
    const paid = 20 * 4 + done.usage!.prompt_tokens * 1;
    const stream = await client.completions.create({
      model: "avocado-tiny",
      prompt: ENDLESS,
      max_tokens: 200,
      temperature: 0,
      stream: true,
    });
    const reading = (async () => {
      let chunks = 0;
      for await (const chunk of stream) {
        void chunk;
        if (++chunks === 2) server!.child.kill("SIGKILL");
      }
    })();
    await expect(reading).rejects.toThrow();
    await exited(server!.child);

    const store = await Store.open(`sqlite:${join(folder, "ws", "avocado.db")}`);
    const org = (await store.orgByName("acme"))!.id;
    const open = await store.openHolds();
    expect(open).toHaveLength(1);
    expect((await store.balance(org)).held).toBeGreaterThan(0);
    await store.close();

    server = await serve(folder);
    expect(server.output()).toMatch(/recovered 1 open hold|"recovered":1/);
    const after = await Store.open(`sqlite:${join(folder, "ws", "avocado.db")}`);
    expect(await after.balance(org)).toEqual({ available: 5_000_000 - paid, held: 0 });
    expect((await after.audit()).problems).toEqual([]);
    await after.close();

    // Usage and invoice from the CLI; the invoice is reproducible.
    const usage = await avocado(["billing", "usage", "--org", "acme"], folder);
    expect(usage.stdout.split("\n")[0]).toBe("day,org,key,model,requests,prompt_tokens,completion_tokens,cost_micros");
    expect(usage.stdout).toMatch(new RegExp(`,acme,avo_[^,]+,avocado-tiny,2,\\d+,20,${paid}\\n`));
    // Drawn too: the CSV stays clean on stdout, the chart's path goes to stderr.
    const drawn = await avocado(["billing", "usage", "--org", "acme", "--svg", "usage.svg"], folder);
    expect(drawn.stdout).toBe(usage.stdout);
    expect(drawn.stderr).toMatch(/usage chart: .*usage\.svg/);
    expect(readFileSync(join(folder, "usage.svg"), "utf8")).toMatch(/<svg[\s\S]*2 requests[\s\S]*avocado-tiny/);
    const month = new Date().toISOString().slice(0, 7);
    const first = await avocado(["--json", "billing", "invoice", "--org", "acme", "--month", month], folder);
    const second = await avocado(["--json", "billing", "invoice", "--org", "acme", "--month", month], folder);
    expect(first.stdout).toBe(second.stdout);
    expect(JSON.parse(first.stdout.trim()) as unknown).toMatchObject({
      invoice: { totals: { requests: 2, amount: paid } },
    });

    // A revoked key is refused by the running server within its one-second cache.
    const keys = await avocado(["--json", "keys", "list"], folder);
    const id = (JSON.parse(keys.stdout.trim()) as { keys: { id: string }[] }).keys[0]!.id;
    expect((await avocado(["keys", "revoke", id], folder)).code).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    await expect(client.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
  }, 60_000);
});

describe("avocado serve killed (kill -9) under load", () => {
  for (const kind of ["sqlite", "postgres"] as const) {
    it(`on ${kind}: has charged every answer a client received exactly its usage once it restarts, nothing twice, no hold left open, the ledger balanced`, async () => {
      const folder = scratchFolder(`serve-killed-under-load-${kind}`);
      await mkdir(join(folder, "ws"), { recursive: true });
      const port = await freePort();
      const postgres = kind === "postgres" ? await freshStore("postgres", "killed_under_load") : undefined;
      await postgres?.store.close();
      const url = postgres?.url ?? `sqlite:${join(folder, "ws", "avocado.db")}`;
      let child: ChildProcess | undefined;
      try {
        const model = `    - { name: avocado-tiny, gguf: ${teacherGguf("tiny-qwen")}, price: { inputPerMillion: 1000000, outputPerMillion: 4000000 }, maxTokens: 8 }`;
        const store = postgres ? JSON.stringify(postgres.url) : "sqlite:avocado.db";
        await writeFile(
          join(folder, "avocado.yaml"),
          [
            "workspace: ws",
            "serve:",
            `  port: ${port}`,
            `  store: ${store}`,
            "  plans: { default: { rpm: 100000, concurrency: 100, topLogprobs: 0 } }",
            "  models:",
            model,
            "",
          ].join("\n"),
        );
        const setup = await Store.open(url);
        const { key } = await setup.createKey({ org: "load", name: "k" });
        await setup.grant("load", 100_000_000, "g");
        const org = (await setup.orgByName("load"))!.id;
        await setup.close();
        child = (await serve(folder)).child;
        const client = new OpenAI({ apiKey: key, baseURL: `http://127.0.0.1:${port}/v1`, maxRetries: 0 });
        // Sixteen clients ask one after another; the server is killed once some thirty answers have come (others are on
        // their way).
        const received: { id: string; cost: number }[] = [];
        let killed = false;
        const killedAt = new Promise<void>((resolve) => {
          const check = setInterval(() => {
            if (received.length < 30) return;
            clearInterval(check);
            killed = true;
            child!.kill("SIGKILL");
            resolve();
          }, 5);
        });
        await Promise.all(
          Array.from({ length: 16 }, async (_, worker) => {
            for (let i = 0; !killed; i++) {
              try {
                const { data, request_id } = await client.chat.completions
                  .create({
                    model: "avocado-tiny",
                    messages: [{ role: "user", content: `Add ${worker} and ${i}.` }],
                    max_tokens: 3,
                    temperature: 0,
                  })
                  .withResponse();
                received.push({
                  id: request_id!,
                  cost: data.usage!.prompt_tokens * 1 + data.usage!.completion_tokens * 4,
                });
              } catch (error) {
                // Cut off by the kill: this client got no answer (before it, every request must be answered).
                if (!killed) throw error;
              }
            }
          }),
        );
        await killedAt;
        await exited(child);
        // The restart replays the dead server's journal and releases the holds of requests that died unanswered.
        const restarted = await serve(folder);
        child = restarted.child;
        child.kill("SIGTERM");
        await exited(child);
        child = undefined;
        const check = await Store.open(url);
        try {
          const rows = new Map(
            (await check.db.selectFrom("requests").select(["request_id", "charged"]).execute()).map((row) => [
              row.request_id,
              row,
            ]),
          );
          for (const answer of received) expect(rows.get(answer.id)?.charged, answer.id).toBe(answer.cost);
          expect(await check.openHolds()).toEqual([]);
          expect((await check.audit()).problems).toEqual([]);
          const charged = [...rows.values()].reduce((sum, row) => sum + row.charged, 0);
          expect(charged).toBeGreaterThanOrEqual(received.reduce((sum, answer) => sum + answer.cost, 0));
          expect(await check.balance(org)).toEqual({ available: 100_000_000 - charged, held: 0 });
        } finally {
          await check.close();
        }
      } finally {
        child?.kill("SIGKILL");
        await postgres?.drop();
        await rm(folder, { recursive: true, force: true });
      }
    }, 120_000);
  }
});

describe("avocado serve killed while its PostgreSQL is away", () => {
  it("keeps the settlement of a stream it could not charge in a file, and the next start charges it (not released as unknown)", async () => {
    const folder = scratchFolder("serve-pending");
    await mkdir(folder, { recursive: true });
    const fresh = await freshStore("postgres", "pending");
    const partition = new Partition(targetOf(POSTGRES_URL, 5432));
    await partition.up();
    const port = await freePort();
    let child: ChildProcess | undefined;
    try {
      const { key } = await fresh.store.createKey({ org: "pending", name: "k" });
      await fresh.store.grant("pending", 10_000_000, "p");
      const org = (await fresh.store.orgByName("pending"))!.id;
      const model = `    - { name: avocado-tiny, gguf: ${teacherGguf("tiny-qwen")}, price: { inputPerMillion: 1000000, outputPerMillion: 4000000 }, maxTokens: 200 }`;
      await writeFile(
        join(folder, "avocado.yaml"),
        [
          "workspace: ws",
          "serve:",
          `  port: ${port}`,
          `  store: ${JSON.stringify(partition.relayed(fresh.url))}`,
          "  models:",
          model,
          "",
        ].join("\n"),
      );
      child = (await serve(folder)).child;
      const client = new OpenAI({ apiKey: key, baseURL: `http://127.0.0.1:${port}/v1`, maxRetries: 0 });
      // The database goes away mid-stream: the client reads its whole answer, which the server cannot charge yet.
      const usage = await streamCutMidway(client, "avocado-tiny", partition);
      expect(usage?.completion_tokens).toBeGreaterThan(20);
      const pendingFolder = join(folder, "ws", ".avocado", "pending-settlements");
      expect(readdirSync(pendingFolder)).toHaveLength(1);
      // Killed before the database is back; then the database returns and the server starts again.
      child.kill("SIGKILL");
      await exited(child);
      await partition.up();
      const restarted = await serve(folder);
      child = restarted.child;
      expect(restarted.output()).toMatch(/"settled":1[^\n]*"event":"api.resumed_settlements"/);
      expect(readdirSync(pendingFolder)).toEqual([]);
      const cost = usage!.prompt_tokens * 1 + usage!.completion_tokens * 4;
      expect(await fresh.store.openHolds()).toEqual([]);
      expect((await fresh.store.usage()).reduce((sum, row) => sum + row.cost, 0)).toBe(cost);
      expect(await fresh.store.balance(org)).toEqual({ available: 10_000_000 - cost, held: 0 });
      expect((await fresh.store.audit()).problems).toEqual([]);
    } finally {
      child?.kill("SIGKILL");
      await partition.cut();
      await fresh.store.close();
      await fresh.drop();
      await rm(folder, { recursive: true, force: true });
    }
  }, 60_000);
});

describe("avocado serve that cannot start", () => {
  it("on a port in use: a clear error, exit code 2, and nothing left running (the store, the model and the app are closed)", async () => {
    const folder = scratchFolder("serve-port-taken");
    await mkdir(folder, { recursive: true });
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const port = (taken.address() as { port: number }).port;
    try {
      const model = `    - { name: avocado-tiny, gguf: ${teacherGguf("tiny-qwen")}, price: { inputPerMillion: 1, outputPerMillion: 1 } }`;
      await writeFile(
        join(folder, "avocado.yaml"),
        ["workspace: ws", "serve:", `  port: ${port}`, "  store: sqlite:avocado.db", "  models:", model, ""].join("\n"),
      );
      const started = Date.now();
      const result = await avocado(["serve"], folder);
      expect([result.code, result.stderr.trim()]).toEqual([
        2,
        `avocado: cannot listen on 127.0.0.1:${port}: the address is in use (another avocado serve?); choose another with --port or serve.port`,
      ]);
      expect(Date.now() - started).toBeLessThan(20_000);
      // Its ledger journal was removed with the store: nothing for the next start to replay.
      expect(readdirSync(join(folder, "ws")).filter((name) => name.endsWith(".journal"))).toEqual([]);
    } finally {
      taken.close();
      await rm(folder, { recursive: true, force: true });
    }
  });
});

describe("avocado serve whose log reader goes away", () => {
  it("keeps serving (EPIPE on stderr drops log lines instead of ending the process)", async () => {
    const folder = scratchFolder("serve-epipe");
    await mkdir(folder, { recursive: true });
    const port = await freePort();
    let child: ChildProcess | undefined;
    try {
      const model = `    - { name: avocado-tiny, gguf: ${teacherGguf("tiny-qwen")}, price: { inputPerMillion: 1, outputPerMillion: 1 }, maxTokens: 4 }`;
      await writeFile(
        join(folder, "avocado.yaml"),
        ["workspace: ws", "serve:", `  port: ${port}`, "  store: sqlite:avocado.db", "  models:", model, ""].join("\n"),
      );
      const created = await avocado(["--json", "keys", "create", "--org", "logs"], folder);
      const key = (JSON.parse(created.stdout.trim().split("\n").at(-1)!) as { key: string }).key;
      expect(
        (await avocado(["billing", "credit", "--org", "logs", "--amount", "1000000", "--idempotency-key", "l"], folder))
          .code,
      ).toBe(0);
      const started = await serve(folder);
      child = started.child;
      // The reader of its stdout and stderr (a log shipper, `| tee`) goes away.
      child.stdout!.destroy();
      child.stderr!.destroy();
      const client = new OpenAI({ apiKey: key, baseURL: `http://127.0.0.1:${port}/v1`, maxRetries: 0 });
      for (let i = 0; i < 3; i++) {
        const answer = await client.chat.completions.create({
          model: "avocado-tiny",
          messages: [{ role: "user", content: "hi" }],
          max_tokens: 2,
        });
        expect(answer.usage?.completion_tokens).toBeGreaterThan(0);
        // The access log is written every 50 ms: let it try.
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(child.exitCode).toBeNull();
    } finally {
      child?.kill("SIGKILL");
      await rm(folder, { recursive: true, force: true });
    }
  });
});
