import { DEFAULT_STUDENT_ARCHITECTURE, DEFAULT_STUDENT_OPTIMIZATION } from "../../student/train-student.ts";
import { BEHAVIOURS } from "../../tinyworld/behaviours.ts";
import { TINY_TEACHERS } from "../../tinyworld/teacher-specs.ts";
import type { WorldSize } from "../../tinyworld/world.ts";

/**
 * What the quickstart runs at each tiny-world size, sized to its time budget on 2 cores (20 minutes for the default
 * world, 5 for the test world): how many prompts are distilled, and how long the student trains.
 */
export interface QuickstartPlan {
  size: WorldSize;
  /** Train prompts distilled (each asked once, greedy, of the teachers trained on its skill). */
  prompts: number;
  topK: number;
  student: {
    architecture: Record<string, number | boolean>;
    optimization: Record<string, number>;
  };
}

export const PLANS: Record<WorldSize, QuickstartPlan> = {
  test: {
    size: "test",
    prompts: 150,
    topK: 8,
    student: {
      architecture: {
        layers: 2,
        hidden: 64,
        heads: 4,
        kvHeads: 2,
        headDim: 16,
        ffn: 192,
        context: 256,
        ropeTheta: 10000,
      },
      optimization: { steps: 120, batchSize: 16, learningRate: 0.004, warmupSteps: 10, checkpointEvery: 20 },
    },
  },
  default: {
    size: "default",
    prompts: 6000,
    topK: 20,
    student: {
      // The student's defaults, shorter: what fits the budget.
      architecture: { ...DEFAULT_STUDENT_ARCHITECTURE, context: 256 },
      optimization: { ...DEFAULT_STUDENT_OPTIMIZATION, steps: 1000, warmupSteps: 50 },
    },
  },
};

/** The run names the quickstart's stages use: its own, so it never resumes or overwrites a run of yours. */
export const RUN = "quickstart";
export const STUDENT = "quickstart-student";

const flow = (value: Record<string, number | boolean>) =>
  `{ ${Object.entries(value)
    .map(([k, v]) => `${k}: ${v}`)
    .join(", ")} }`;

/** The config every stage runs with, written beside the quickstart's state so that a user can read and rerun it. */
export function quickstartConfig(plan: QuickstartPlan, workspace: string, seed: number, threads: number): string {
  return `# Written by 'avocado quickstart --size ${plan.size}': the config each of its stages ran with.
workspace: ${JSON.stringify(workspace)}
tinyworld: { size: ${plan.size}, seed: ${seed} }
train: { threads: ${threads} }
distill:
  sources: [{ builtIn: tinyworld, limit: ${plan.prompts} }]
  # each teacher answers the skills it was trained on (its card's skills), and every behaviour prompt
  teachers:
${TINY_TEACHERS.map((t) => `    - { name: ${t.name}, temperature: 0, tags: [${[...t.skills, ...BEHAVIOURS].join(", ")}] }`).join("\n")}
  logprobs: { topK: ${plan.topK} }
student:
  name: ${STUDENT}
  from: ${RUN}
  architecture: ${flow(plan.student.architecture)}
  optimization: ${flow(plan.student.optimization)}
  suites: [tinyworld, tinyworld-probes]
`;
}
