import { ESLint } from "eslint";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../src/core/paths.ts";

describe("stage boundaries (eslint)", () => {
  const eslint = new ESLint({ cwd: PROJECT_ROOT });
  const restricted = async (filePath: string, code: string) =>
    (await eslint.lintText(code, { filePath }))
      .flatMap((result) => result.messages)
      .filter((message) => message.ruleId === "no-restricted-imports").length;

  it("fails an import of teachers, train or tinyworld from serve, code or test", async () => {
    expect(
      await restricted(
        "src/serve/models/probe.ts",
        'import { ModelError } from "../../teachers/teacher.ts";\nvoid ModelError;\n',
      ),
    ).toBe(1);
    expect(await restricted("src/serve/probe.test.ts", 'import "../train/launcher.ts";\n')).toBe(1);
    expect(await restricted("src/serve/probe.ts", 'import "../tinyworld/world.ts";\n')).toBe(1);
    // The API reads a student's card file (export/model-card.ts), never the student stage; nor the student the API.
    expect(await restricted("src/serve/probe.ts", 'import "../student/train-student.ts";\n')).toBe(1);
    expect(await restricted("src/student/probe.test.ts", 'import "../serve/server.ts";\n')).toBe(1);
  });

  it("fails an upward import from core and the shared OpenAI module, and lets downward ones through", async () => {
    expect(await restricted("src/core/probe.ts", 'import "../engine/llama.ts";\n')).toBe(1);
    expect(await restricted("src/openai/probe.ts", 'import "../teachers/teacher.ts";\n')).toBe(1);
    expect(
      await restricted(
        "src/serve/probe.ts",
        'import "../openai/protocol.ts";\nimport "../engine/llama.ts";\nimport "./models/served-model.ts";\n',
      ),
    ).toBe(0);
    expect(
      await restricted("src/teachers/probe.ts", 'import "../openai/sse.ts";\nimport "../core/model-error.ts";\n'),
    ).toBe(0);
  });
});

describe("file size", () => {
  it("keeps every file in src/ at 400 lines or fewer (a longer one is split by what it does)", () => {
    const files = readdirSync(join(PROJECT_ROOT, "src"), { recursive: true, encoding: "utf8" }).filter((name) =>
      name.endsWith(".ts"),
    );
    const long = files
      .map(
        (name) =>
          [
            name,
            readFileSync(join(PROJECT_ROOT, "src", name), "utf8")
              .trimEnd()
              .split("\n").length,
          ] as const,
      )
      .filter(([, lines]) => lines > 400);
    expect(files.length).toBeGreaterThan(100);
    expect(long).toEqual([]);
  });
});
