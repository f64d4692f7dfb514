import type { Skill, SkillName } from "../skill.ts";
import { arithmetic } from "./arithmetic.ts";
import { logic } from "./logic.ts";
import { lookup } from "./lookup.ts";
import { reverse } from "./reverse.ts";
import { units } from "./units.ts";

export const SKILLS: Record<SkillName, Skill> = { arithmetic, reverse, lookup, units, logic };
