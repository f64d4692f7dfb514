import { appendFileSync, copyFileSync, mkdirSync, rmSync, utimesSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { scratchFolder, teacherGguf } from "../../test/fixtures.ts";
import { POSTGRES_URL } from "../../test/stores.ts";
import { teacherConfigSchema } from "../core/config/teacher-schema.ts";
import { openTeacher } from "../teachers/registry.ts";
import type { Teacher, TeacherRequest } from "../teachers/teacher.ts";
import { cachedTeacher, modelIdentity, ResponseCache } from "./cache.ts";

describe.each(["sqlite", "postgres"] as const)("the response cache (%s)", (kind) => {
  const folder = scratchFolder(`cache-${kind}`);
  mkdirSync(folder, { recursive: true });
  const schema = `cache_${process.pid}_${Date.now()}`;
  afterAll(async () => {
    rmSync(folder, { recursive: true, force: true });
    if (kind === "postgres") {
      const admin = new pg.Client({ connectionString: POSTGRES_URL });
      await admin.connect();
      await admin.query(`drop schema if exists ${schema} cascade`);
      await admin.end();
    }
  });

  async function url(): Promise<string> {
    if (kind === "sqlite") return `sqlite:${join(folder, "cache.db")}`;
    const admin = new pg.Client({ connectionString: POSTGRES_URL });
    await admin.connect();
    await admin.query(`create schema if not exists ${schema}`);
    await admin.end();
    return `${POSTGRES_URL}?options=${encodeURIComponent(`-c search_path=${schema}`)}`;
  }

  it("answers a request it has seen from the cache, and only that request, across reopenings", async () => {
    const path = join(folder, "tiny-qwen.gguf");
    copyFileSync(teacherGguf("tiny-qwen"), path);
    const config = teacherConfigSchema.parse({ name: "q", family: "qwen", transport: "embedded", path });
    const teacher = await openTeacher(config);
    let calls = 0;
    const counted: Teacher = Object.assign(Object.create(teacher) as Teacher, {
      generate: (request: TeacherRequest) => {
        calls++;
        return request.maxTokens === 1 ? Promise.reject(new Error("refused")) : teacher.generate(request);
      },
    });
    const ask: TeacherRequest = {
      messages: [{ role: "user", content: "Convert 2 kg to g." }],
      maxTokens: 24,
      temperature: 0,
    };
    try {
      const cache = await ResponseCache.open(await url());
      const cached = cachedTeacher(counted, await modelIdentity(config), cache);
      const first = await cached.generate(ask);
      expect(await cached.generate(ask)).toEqual(first);
      expect(await cached.generate({ ...ask, maxTokens: 16 })).toBeDefined();
      // A failure is not kept: asked again.
      await expect(cached.generate({ ...ask, maxTokens: 1 })).rejects.toThrow(/refused/);
      await expect(cached.generate({ ...ask, maxTokens: 1 })).rejects.toThrow(/refused/);
      expect([calls, cache.hits, cache.misses]).toEqual([4, 1, 4]);
      await cache.close();
      // Reopened (another run, after a crash): still there.
      const again = await ResponseCache.open(await url());
      expect(await cachedTeacher(counted, await modelIdentity(config), again).generate(ask)).toEqual(first);
      expect([calls, again.hits]).toEqual([4, 1]);
      // The same file touched, or copied elsewhere, is the same model: its content is its identity.
      utimesSync(path, new Date(), new Date(Date.now() + 60_000));
      const elsewhere = join(folder, "copy.gguf");
      copyFileSync(path, elsewhere);
      const moved = teacherConfigSchema.parse({ name: "q", family: "qwen", transport: "embedded", path: elsewhere });
      expect(await modelIdentity(moved)).toBe(await modelIdentity(config));
      await cachedTeacher(counted, await modelIdentity(config), again).generate(ask);
      expect(calls).toBe(4);
      // Retrained at the same path (other bytes) is another model.
      appendFileSync(path, Buffer.from([0]));
      await cachedTeacher(counted, await modelIdentity(config), again).generate(ask);
      expect(calls).toBe(5);
      await again.close();
    } finally {
      await teacher.close();
    }
  });

  it("keeps teacher-forced scorings too (multiple choice asks each answer's log-likelihood once)", async () => {
    const config = teacherConfigSchema.parse({
      name: "q",
      family: "qwen",
      transport: "embedded",
      path: teacherGguf("tiny-qwen"),
    });
    const teacher = await openTeacher(config);
    let calls = 0;
    const counted: Teacher = Object.assign(Object.create(teacher) as Teacher, {
      score: (request: Parameters<Teacher["score"]>[0]) => (calls++, teacher.score(request)),
    });
    const messages = [{ role: "user" as const, content: "Convert 2 kg to g." }];
    try {
      const cache = await ResponseCache.open(await url());
      const cached = cachedTeacher(counted, await modelIdentity(config), cache);
      const first = await cached.score({ messages, continuation: "2000<|im_end|>" });
      expect(await cached.score({ messages, continuation: "2000<|im_end|>" })).toEqual(first);
      expect(Number.isFinite(first.logprob)).toBe(true);
      await cached.score({ messages, continuation: "200<|im_end|>" });
      // A generation of the same prompt is another key.
      await cached.generate({ messages, maxTokens: 4, temperature: 0 });
      expect([calls, cache.hits, cache.misses]).toEqual([2, 1, 3]);
      await cache.close();
    } finally {
      await teacher.close();
    }
  });
});
