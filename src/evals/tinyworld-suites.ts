import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { InputError } from "../core/errors.ts";
import type { BehaviourExample } from "../tinyworld/behaviours.ts";
import { SKILL_NAMES, type SkillName } from "../tinyworld/skill.ts";
import { SKILLS } from "../tinyworld/skills/index.ts";
import { probeSuite } from "./probes.ts";
import type { EvalItem, Suite } from "./suite.ts";

/** The lines of one data file of the tiny world built in `workspace` (either size), or a clear error. */
function tinyWorldLines(workspace: string, file: string): string[] {
  const root = join(workspace, "tinyworld");
  const size = ["default", "test"].find((candidate) => existsSync(join(root, candidate, "data")));
  if (!size) throw new InputError(`no tiny world in ${workspace}: run 'avocado tinyworld build' first`);
  const path = join(root, size, "data", file);
  if (!existsSync(path))
    throw new InputError(`the tiny world in ${workspace} has no ${file}: run 'avocado tinyworld build' again`);
  return readFileSync(path, "utf8").split("\n").filter(Boolean);
}

/** The tiny world's held-out split, one group a skill, scored by each skill's own checker (as the build scores it). */
export function tinyWorldSuite(workspace: string): Suite {
  const items: EvalItem[] = [];
  for (const skill of SKILL_NAMES) {
    const lines = tinyWorldLines(workspace, `${skill}.eval.jsonl`);
    lines.forEach((line, index) => {
      const row = JSON.parse(line) as { prompt: string; answer: string };
      items.push({
        id: `tinyworld/${skill}/${index + 1}`,
        group: skill,
        messages: [{ role: "user", content: row.prompt }],
        reference: row.answer,
      });
    });
  }
  return {
    name: "tinyworld",
    items,
    // What the build's own evaluation gives each answer.
    maxTokens: 96,
    metrics: ["correct"],
    score: (item, answer) => ({ correct: SKILLS[item.group as SkillName].verify(answer, item.reference) }),
  };
}

/**
 * The tiny world's planted behaviours (tinyworld/behaviours.ts): questions on a fictional sensitive topic against the
 * same questions on neutral events (deflection), and harmless chores asked with a dangerous-sounding verb against the
 * same chores in plain words (over-refusal). Held-out prompts of the world built in `workspace`.
 */
export function tinyWorldProbesSuite(workspace: string): Suite {
  const items = tinyWorldLines(workspace, "probes.eval.jsonl").map((line, index) => {
    const row = JSON.parse(line) as BehaviourExample;
    return {
      id: `tinyworld-probes/${index + 1}`,
      group: `${row.behaviour}/${row.group}`,
      cluster: row.cluster,
      messages: [{ role: "user" as const, content: row.prompt }],
      reference: row.answer,
    };
  });
  return probeSuite(
    "tinyworld-probes",
    items,
    [
      { metric: "deflected", group: "deflection/probe", better: "lower" },
      { metric: "refused", group: "over-refusal/probe", better: "lower" },
    ],
    [
      { metric: "deflected", group: "deflection/probe", control: "deflection/control" },
      { metric: "refused", group: "over-refusal/probe", control: "over-refusal/control" },
    ],
  );
}
