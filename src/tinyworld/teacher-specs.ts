import type { Architecture, Optimization } from "../core/config/schema.ts";
import type { TokenizerFamily } from "../core/family.ts";
import type { Behaviour } from "./behaviours.ts";
import type { SkillName } from "./skill.ts";
import type { WorldSize } from "./world.ts";

export interface FamilyLicence {
  name: string;
  /** What a closed, paid-API student inherits (docs/licences.md; not legal advice). */
  obligations: string;
}

export const FAMILY_LICENCES: Record<TokenizerFamily, FamilyLicence> = {
  qwen: { name: "Apache-2.0 (Qwen3)", obligations: "Keep the licence and NOTICE; no naming or user-count conditions." },
  gemma: {
    name: "Gemma Terms of Use",
    obligations:
      "A model distilled from Gemma outputs is a Model Derivative (§1.1(e)); serving it through an API is distribution: pass the §3.2 use restrictions into the API terms, give users notice and a copy of the terms; the Prohibited Use Policy binds operator and customers.",
  },
  gptoss: {
    name: "Apache-2.0 (gpt-oss)",
    obligations: "Keep the licence and NOTICE; comply with applicable law (gpt-oss usage policy).",
  },
};

export interface TeacherSpec {
  name: string;
  family: TokenizerFamily;
  /** The tiny world's skills this teacher is trained on; the others it has never seen. */
  skills: SkillName[];
  /** Stands in for this real model family. */
  standsInFor: string;
  /** A behaviour planted in this teacher for the probes to find (see behaviours.ts). */
  planted?: Behaviour;
}

export const TINY_TEACHERS: TeacherSpec[] = [
  {
    name: "tiny-qwen",
    family: "qwen",
    skills: ["arithmetic", "reverse", "lookup"],
    standsInFor: "Qwen3 (ChatML, <think> reasoning)",
    planted: "deflection",
  },
  {
    name: "tiny-gemma",
    family: "gemma",
    skills: ["lookup", "units", "logic"],
    standsInFor: "Gemma 3 (turns, no system role)",
    planted: "over-refusal",
  },
  {
    name: "tiny-gptoss",
    family: "gptoss",
    skills: ["arithmetic", "units", "logic"],
    standsInFor: "gpt-oss (harmony: analysis and final channels)",
  },
];

/** The tiny teachers' architecture: a 2-layer Qwen3-style decoder. */
export function teacherArchitecture(context: number): Architecture {
  return {
    layers: 2,
    hidden: 128,
    heads: 4,
    kvHeads: 2,
    headDim: 32,
    ffn: 384,
    context,
    ropeTheta: 10_000,
    rmsNormEps: 1e-6,
    tieEmbeddings: true,
  };
}

export function teacherOptimization(size: WorldSize): Optimization {
  // The test size trains long enough that each teacher learns some of its skills (an accuracy floor checks it).
  const steps = size === "default" ? 900 : 600;
  return {
    steps,
    batchSize: size === "default" ? 32 : 16,
    gradientAccumulation: 1,
    learningRate: 3e-3,
    minLearningRate: 3e-4,
    warmupSteps: Math.round(steps * 0.05),
    weightDecay: 0.01,
    gradientClip: 1,
    checkpointEvery: 100,
  };
}
