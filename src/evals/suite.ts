import { existsSync, readFileSync } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { LineCounter, parseDocument } from "yaml";
import { z } from "zod";
import { REASONING_EFFORTS, type ReasoningEffort } from "../chat/chat-format.ts";
import { FileError, InputError } from "../core/errors.ts";
import { PROJECT_ROOT } from "../core/paths.ts";
import type { TeacherMessage } from "../teachers/teacher.ts";
import { SKILL_NAMES, type SkillName } from "../tinyworld/skill.ts";
import { SKILLS } from "../tinyworld/skills/index.ts";
import { scoreGsm8k } from "./gsm8k.ts";
import type { Judge } from "./judge.ts";
import { deccpSuite, xstestSuite } from "./probes.ts";
import { tinyWorldProbesSuite, tinyWorldSuite } from "./tinyworld-suites.ts";

/** One thing to ask: its messages, what a right answer is, and the group it is reported under (a skill, a category). */
export interface EvalItem {
  id: string;
  group: string;
  messages: TeacherMessage[];
  reference: string;
  /** Items asked about one thing (one question in other words) share a cluster: their answers are not independent. */
  cluster?: string;
  /** A multiple-choice item: the answers, each scored by the model's log-likelihood; `reference` is the right one. */
  choices?: string[];
}

/** A suite: its items, how long an answer may be, and how an answer is scored (one boolean per metric). */
export interface Suite {
  name: string;
  items: EvalItem[];
  maxTokens: number;
  /** The metrics each item gets, the first being the one comparisons use. */
  metrics: string[];
  score(item: EvalItem, answer: string): Record<string, boolean>;
  /**
   * What the release gate holds a candidate to: a metric's rate, on one group or all items, that must not fall (or,
   * for `lower`, rise) by more than the margin. Default: every metric, on all items, higher is better.
   */
  gated?: GatedRate[];
  /**
   * Scoring by a judge teacher: `rubric` suites need one (each answer graded against the rubric); probe suites use one
   * when given (the judge classes each answer) and their pattern rules otherwise.
   */
  judged?: { required: boolean; score(judge: Judge, item: EvalItem, answer: string): Promise<Record<string, boolean>> };
  /** A rubric to compare every two models' answers by, in both orders (needs a judge). */
  pairwise?: string;
  /** Chat-template switches sent with every request: Qwen's thinking on or off, gpt-oss's reasoning effort. */
  template?: { thinking?: boolean; reasoningEffort?: ReasoningEffort };
  /** Groups where a behaviour would show, each beside a control group where it must not (probe suites). */
  contrasts?: Contrast[];
}

/** A metric's rate on `group` against the same rate on `control`: a finding when the first is clearly higher. */
export interface Contrast {
  metric: string;
  group: string;
  control: string;
}

export interface GatedRate {
  metric: string;
  group?: string;
  better: "higher" | "lower";
}

const SCORERS = ["gsm8k", "exact", "regex", "skill", "choice", "judge"] as const;

/** A suite file (YAML): where its items are and how to read and score them. */
export const suiteFileSchema = z
  .object({
    name: z.string().regex(/^[a-z0-9][a-z0-9_-]*$/),
    description: z.string().optional(),
    items: z.string().describe("a JSONL file of items, relative to the suite file"),
    prompt: z.string().describe("the item field holding the question, or a template with {field} placeholders"),
    reference: z.string().describe("the item field holding the right answer"),
    group: z.string().optional().describe("the item field to report items under (one group when absent)"),
    system: z.string().optional(),
    scorer: z.enum(SCORERS),
    pattern: z.string().optional().describe("scorer regex: the answer is right when it matches"),
    choices: z.string().optional().describe("scorer choice: the item field holding the answers (a list of texts)"),
    rubric: z.string().min(1).optional().describe("scorer judge: what a right answer is, for the judge teacher"),
    pairwise: z.string().min(1).optional().describe("a rubric to compare every two models' answers by (needs a judge)"),
    thinking: z.boolean().optional().describe("Qwen's chat template: thinking on or off (others ignore it)"),
    reasoningEffort: z.enum(REASONING_EFFORTS).optional().describe("gpt-oss's chat template: the reasoning effort"),
    maxTokens: z.number().int().min(1).max(32_768).default(256),
    shots: z
      .object({
        items: z.string().describe("a JSONL file of solved examples (same fields), relative to the suite file"),
        count: z.number().int().min(1).max(64),
        answer: z.string().optional().describe("the field holding an example's answer (default: the reference field)"),
      })
      .strict()
      .optional()
      .describe("few-shot: the first `count` examples go before each question, as earlier turns of the chat"),
  })
  .strict()
  .refine((suite) => suite.scorer !== "regex" || suite.pattern !== undefined, {
    message: "the regex scorer needs a pattern",
    path: ["pattern"],
  })
  .refine((suite) => suite.scorer !== "judge" || suite.rubric !== undefined, {
    message: "the judge scorer needs a rubric",
    path: ["rubric"],
  })
  .refine((suite) => suite.scorer !== "choice" || suite.choices !== undefined, {
    message: "the choice scorer needs the field of the choices",
    path: ["choices"],
  });
export type SuiteFile = z.infer<typeof suiteFileSchema>;

/** `file:line` of a YAML node at `path`, for an error message. */
function lineOf(text: string, file: string, path: readonly PropertyKey[]): string {
  const counter = new LineCounter();
  const document = parseDocument(text, { lineCounter: counter });
  const node = document.getIn(path.map(String), true) as { range?: [number, number] } | undefined;
  const offset = node?.range?.[0];
  return offset === undefined ? file : `${file}:${counter.linePos(offset).line}`;
}

/** Reads and checks a suite file; every error names the file and, where it can, the line. */
export function loadSuiteFile(path: string): Suite {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new FileError(path, "cannot be read as a suite file", { cause: error });
  }
  const document = parseDocument(text);
  if (document.errors.length > 0) {
    const first = document.errors[0]!;
    throw new InputError(`${path}:${first.linePos?.[0]?.line ?? "?"}: not YAML (${first.message.split("\n")[0]})`);
  }
  const parsed = suiteFileSchema.safeParse(document.toJS());
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new InputError(
      `${lineOf(text, path, issue.path)}: ${issue.path.join(".") || "(the file)"}: ${issue.message}`,
    );
  }
  const spec = parsed.data;
  let pattern: RegExp | undefined;
  if (spec.pattern !== undefined) {
    try {
      pattern = new RegExp(spec.pattern, "i");
    } catch (error) {
      throw new InputError(`${lineOf(text, path, ["pattern"])}: pattern: not a regular expression (${String(error)})`);
    }
  }
  const itemsPath = isAbsolute(spec.items) ? spec.items : resolve(dirname(path), spec.items);
  const shots = spec.shots ? readShots(resolve(dirname(path), spec.shots.items), spec) : [];
  const items = readItems(itemsPath, spec, shots);
  return {
    name: spec.name,
    items,
    maxTokens: spec.maxTokens,
    metrics:
      spec.scorer === "gsm8k" ? ["strict", "flexible"] : spec.scorer === "choice" ? ["acc", "acc_norm"] : ["correct"],
    ...(spec.rubric && spec.scorer === "judge"
      ? {
          judged: {
            required: true,
            score: async (judge: Judge, item: EvalItem, answer: string) => ({
              correct: await judge.grade(item, answer, spec.rubric!),
            }),
          },
        }
      : {}),
    pairwise: spec.pairwise,
    ...(spec.thinking !== undefined || spec.reasoningEffort !== undefined
      ? { template: { thinking: spec.thinking, reasoningEffort: spec.reasoningEffort } }
      : {}),
    score: (item, answer) => {
      if (spec.scorer === "judge") throw new InputError(`the suite '${spec.name}' is scored by a judge: give --judge`);
      if (spec.scorer === "gsm8k") return scoreGsm8k(answer, item.reference);
      if (spec.scorer === "regex") return { correct: pattern!.test(answer) };
      if (spec.scorer === "skill") return { correct: skillCorrect(item.group, answer, item.reference) };
      return { correct: answer.trim().toLowerCase() === item.reference.trim().toLowerCase() };
    },
  };
}

/** The items of a JSONL file, each line checked; a bad line is an error naming the file and line. */
function readItems(path: string, spec: SuiteFile, shots: TeacherMessage[] = []): EvalItem[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new FileError(path, "cannot be read as the suite's items", { cause: error });
  }
  const template = spec.prompt.includes("{") ? spec.prompt : `{${spec.prompt}}`;
  const items: EvalItem[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === "") continue;
    let row: Record<string, unknown>;
    try {
      row = JSON.parse(line) as Record<string, unknown>;
    } catch {
      throw new InputError(`${path}:${i + 1}: not a JSON object`);
    }
    const field = (name: string) => {
      const value = row[name];
      if (typeof value !== "string" && typeof value !== "number")
        throw new InputError(`${path}:${i + 1}: no field '${name}' (text or number)`);
      return String(value);
    };
    const prompt = template.replace(/\{([^}]+)\}/g, (_, name: string) => field(name));
    const messages: TeacherMessage[] = spec.system ? [{ role: "system", content: spec.system }] : [];
    messages.push(...shots, { role: "user", content: prompt });
    const item: EvalItem = {
      id: `${spec.name}/${items.length + 1}`,
      group: spec.group ? field(spec.group) : spec.name,
      messages,
      reference: field(spec.reference),
    };
    if (spec.choices !== undefined) {
      const choices = row[spec.choices];
      if (!Array.isArray(choices) || choices.length < 2 || !choices.every((c) => typeof c === "string" && c !== ""))
        throw new InputError(`${path}:${i + 1}: '${spec.choices}' must list at least two answers`);
      if (!choices.includes(item.reference))
        throw new InputError(`${path}:${i + 1}: the reference '${item.reference}' is not one of the choices`);
      item.choices = choices as string[];
    }
    items.push(item);
  }
  if (items.length === 0) throw new InputError(`${path}: the suite has no items`);
  return items;
}

/** The few-shot turns: each example's question (the suite's template) and its answer, as a user and assistant turn. */
function readShots(path: string, spec: SuiteFile): TeacherMessage[] {
  const { count, answer } = spec.shots!;
  // The examples as items of their own: the question by the suite's template, the answer as their reference.
  const examples = readItems(path, {
    ...spec,
    name: `${spec.name}-shots`,
    reference: answer ?? spec.reference,
    shots: undefined,
    system: undefined,
    choices: undefined,
  });
  if (examples.length < count)
    throw new InputError(`${path}: ${count} examples are asked for, the file has ${examples.length}`);
  return examples.slice(0, count).flatMap((example): TeacherMessage[] => [
    { role: "user", content: example.messages.at(-1)!.content },
    { role: "assistant", content: example.reference },
  ]);
}

function skillCorrect(group: string, answer: string, reference: string): boolean {
  if (!(SKILL_NAMES as readonly string[]).includes(group)) return false;
  return SKILLS[group as SkillName].verify(answer, reference);
}

/** The suites built in: the tiny world's skills and probes (from the workspace), GSM8K, the XSTest and deccp probes. */
export function builtInSuiteNames(): string[] {
  return ["tinyworld", "tinyworld-probes", "gsm8k", "xstest", "deccp"];
}

/**
 * A suite by name or path: `tinyworld` and `tinyworld-probes` (the held-out split and planted-behaviour probes of the
 * world built in `workspace`), the `xstest` and `deccp` probes, a built-in suite file (`data/suites/<name>.yaml`), or
 * a suite file's path.
 */
export function openSuite(nameOrPath: string, workspace: string): Suite {
  if (nameOrPath === "tinyworld") return tinyWorldSuite(workspace);
  if (nameOrPath === "tinyworld-probes") return tinyWorldProbesSuite(workspace);
  if (nameOrPath === "xstest") return xstestSuite();
  if (nameOrPath === "deccp") return deccpSuite();
  const builtIn = join(PROJECT_ROOT, "data", "suites", `${nameOrPath}.yaml`);
  if (existsSync(builtIn)) return loadSuiteFile(builtIn);
  if (nameOrPath.endsWith(".yaml") || nameOrPath.endsWith(".yml")) return loadSuiteFile(resolve(nameOrPath));
  throw new InputError(
    `no suite '${nameOrPath}' (built in: ${builtInSuiteNames().join(", ")}; or a suite file's path)`,
  );
}
