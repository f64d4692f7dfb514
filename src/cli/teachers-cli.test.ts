import { execFile } from "node:child_process";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { scratchFolder, TEST_WORKSPACE, teacherGguf } from "../../test/fixtures.ts";
import { OpenAiCompatibleTestServer } from "../../test/openai-compatible-server.ts";
import { PROJECT_ROOT } from "../core/paths.ts";
import { EmbeddedEngine } from "../engine/embedded-engine.ts";

const BIN = join(PROJECT_ROOT, "bin", "avocado.js");
const KEY = "sk-cli-SECRET-91c0ffee";

/** The CLI as a child process, asynchronously: the test's own server must keep answering meanwhile. */
function avocado(
  args: string[],
  cwd: string,
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { cwd, encoding: "utf8", env: { ...process.env, AVOCADO_WORKSPACE: TEST_WORKSPACE, ...env } },
      (error, stdout, stderr) =>
        resolve({ code: error ? (typeof error.code === "number" ? error.code : 1) : 0, stdout, stderr }),
    );
  });
}

describe("avocado teachers (list, probe, chat) over configured HTTP and embedded teachers", () => {
  const scratch = scratchFolder("teachers-cli");
  let server: OpenAiCompatibleTestServer;

  beforeAll(async () => {
    server = await new OpenAiCompatibleTestServer(
      await EmbeddedEngine.load(teacherGguf("tiny-qwen"), { sequences: 2 }),
      { model: "tiny-qwen", apiKey: KEY },
    ).start();
    await mkdir(scratch, { recursive: true });
    await writeFile(
      join(scratch, "avocado.yaml"),
      [
        "teachers:",
        "  - name: qwen-vllm",
        "    family: qwen",
        "    licence: apache-2.0",
        "    transport: http",
        "    engine: vllm",
        `    baseUrl: ${server.baseUrl}`,
        "    model: tiny-qwen",
        "    apiKeyEnv: CLI_TEACHER_KEY",
        "    price: { inputPerMillion: 100000, outputPerMillion: 400000 }",
        "  - name: research-only",
        "    family: qwen",
        "    licence: qwen-research",
        "    transport: http",
        "    engine: ollama",
        "    baseUrl: http://127.0.0.1:9/v1",
        "    model: qwen2.5:3b",
        "",
      ].join("\n"),
    );
  });
  afterAll(async () => {
    await server.stop();
    await server.engine.dispose();
    await rm(scratch, { recursive: true, force: true });
  });

  it("lists configured and tiny teachers with health, licence and capabilities, flagging a refused licence", async () => {
    const { code, stdout, stderr } = await avocado(["teachers", "list"], scratch, { CLI_TEACHER_KEY: KEY });
    expect(code, stderr).toBe(0);
    expect(stdout).toMatch(/qwen-vllm\s+qwen\s+http\/vllm\s+apache-2\.0\s+logprobs≤20,score,reasoning\s+ok/);
    expect(stdout).toMatch(/research-only .*DOWN/);
    expect(stdout).toMatch(/refused as a teacher: the qwen-research licence forbids/);
    expect(stdout).toMatch(/tiny-gptoss\s+gptoss\s+embedded/);
    expect(`${stdout}${stderr}`).not.toContain(KEY);
  });

  it("probes an HTTP teacher: first token, latency, tokens/s, logprob and score support", async () => {
    const { code, stdout, stderr } = await avocado(
      ["--json", "teachers", "probe", "qwen-vllm", "--requests", "4"],
      scratch,
      { CLI_TEACHER_KEY: KEY },
    );
    expect(code, stderr).toBe(0);
    const result = JSON.parse(stdout.trim().split("\n").at(-1)!) as {
      firstTokenMs: number;
      tokensPerSecond: number;
      logprobs: { supported: boolean };
      score: { supported: boolean };
    };
    expect(result.firstTokenMs).toBeGreaterThan(0);
    expect(result.tokensPerSecond).toBeGreaterThan(0);
    expect(result.logprobs.supported).toBe(true);
    expect(result.score.supported).toBe(true);
  });

  it("chats through HTTP with reasoning separated and the configured cost, and says clearly when the key is missing", async () => {
    const chat = await avocado(["teachers", "chat", "qwen-vllm", "Reverse the word 'fosa'."], scratch, {
      CLI_TEACHER_KEY: KEY,
    });
    expect(chat.code, chat.stderr).toBe(0);
    expect(chat.stdout).toMatch(/\[<think>\]\n[\s\S]+\[answer\]\n/);
    expect(chat.stdout).toMatch(/cost \d+ micro-units/);
    const missing = await avocado(["teachers", "chat", "qwen-vllm", "hi"], scratch);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/CLI_TEACHER_KEY \(its API key\) is not set/);
    const wrong = await avocado(["teachers", "chat", "qwen-vllm", "hi"], scratch, { CLI_TEACHER_KEY: `${KEY}-wrong` });
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toMatch(/answered 401/);
    expect(wrong.stderr).not.toContain(KEY);
  });

  it("probes an embedded tiny teacher from the workspace", async () => {
    const { code, stdout, stderr } = await avocado(
      ["teachers", "probe", "tiny-gemma", "--requests", "2", "--prompt", "Convert 20 kg to g."],
      scratch,
    );
    expect(code, stderr).toBe(0);
    expect(stdout).toMatch(/first token\s+[\d.]+ ms/);
    expect(stdout).toMatch(/score\s+yes/);
  });
});
