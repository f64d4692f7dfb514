import { describe, expect, it } from "vitest";
import { sha256 } from "../core/hash.ts";
import { SKILL_NAMES } from "./skill.ts";
import { SKILLS } from "./skills/index.ts";
import { checkDisjoint, generateWorld } from "./world.ts";

describe("tiny world", () => {
  it("is deterministic: the same seed gives the same splits", () => {
    const a = sha256(JSON.stringify(generateWorld(42, "test")));
    const b = sha256(JSON.stringify(generateWorld(42, "test")));
    const c = sha256(JSON.stringify(generateWorld(43, "test")));
    expect(a).toBe(b);
    expect(a).not.toBe(c);
  });

  it("has at least five skills, each with train and held-out examples", () => {
    const world = generateWorld(1, "test");
    expect(SKILL_NAMES.length).toBeGreaterThanOrEqual(5);
    for (const skill of SKILL_NAMES) {
      expect(world[skill].train.length).toBeGreaterThan(100);
      expect(world[skill].evaluation.length).toBeGreaterThan(5);
    }
  });

  it("checks disjointness rather than assuming it", () => {
    const world = generateWorld(1, "test");
    expect(checkDisjoint(world).evalPrompts).toBeGreaterThan(0);
    const leaked = world.units.evaluation[0];
    if (!leaked) throw new Error("no eval example");
    world.arithmetic.train.push(leaked);
    expect(() => checkDisjoint(world)).toThrow(/held-out units prompt .* is also a training prompt/);
  });

  it("verifies answers: every reference answer is correct, a wrong one is not", () => {
    const world = generateWorld(3, "test");
    for (const skill of SKILL_NAMES) {
      for (const example of world[skill].evaluation) {
        expect(SKILLS[skill].verify(` ${example.answer}.`, example.answer)).toBe(true);
        expect(SKILLS[skill].verify(`${example.answer}x`, example.answer)).toBe(false);
      }
    }
  });

  it("computes arithmetic and unit answers correctly", () => {
    const world = generateWorld(5, "test");
    for (const example of world.arithmetic.evaluation) {
      const [, a, op, b] = /What is (\d+)([+*])(\d+)\?/.exec(example.prompt) ?? [];
      expect(Number(example.answer)).toBe(op === "+" ? Number(a) + Number(b) : Number(a) * Number(b));
    }
    for (const example of world.reverse.evaluation) {
      const word = /'(.+)'/.exec(example.prompt)?.[1] ?? "";
      expect(example.answer).toBe([...word].reverse().join(""));
    }
  });
});
