import js from "@eslint/js";
import stylistic from "@stylistic/eslint-plugin";
import tseslint from "typescript-eslint";

/**
 * Stages import downward only. Each entry: a stage's folder and the stages above
 * it that it must not import (tests included). What two stages share lives below
 * both: the OpenAI protocol in src/openai/, errors in src/core/.
 */
const STAGES = [
  "core",
  "tokenizers",
  "chat",
  "openai",
  "engine",
  "export",
  "teachers",
  "tinyworld",
  "distill",
  "train",
  "evals",
  "student",
  "serve",
  "cli",
];
const FORBIDDEN = {
  core: STAGES.filter((stage) => stage !== "core"),
  openai: STAGES.filter((stage) => stage !== "core" && stage !== "openai"),
  tokenizers: ["engine", "teachers", "tinyworld", "distill", "evals", "student", "serve", "cli"],
  chat: ["engine", "teachers", "tinyworld", "distill", "evals", "student", "serve", "cli"],
  engine: ["teachers", "tinyworld", "distill", "evals", "student", "serve", "cli"],
  teachers: ["distill", "evals", "student", "serve", "cli"],
  // The evals judge teachers and students; distillation and training build on them, never the other way.
  evals: ["distill", "train", "student", "serve", "cli"],
  // Distillation uses the teachers and the evals (cache, decontamination, probes); training reads its output files.
  distill: ["train", "student", "serve", "cli"],
  // The student is built from a distill run by the trainer, judged by the evals; the API reads only its card file.
  student: ["serve", "cli"],
  serve: ["teachers", "distill", "train", "evals", "tinyworld", "student", "cli"],
};
// The tokenizers' tests check trimmed vocabularies against llama.cpp itself: they may load the engine.
const CODE_ONLY = new Set(["tokenizers"]);
const stageRules = Object.entries(FORBIDDEN).map(([stage, above]) => ({
  files: [`src/${stage}/**/*.ts`],
  ignores: CODE_ONLY.has(stage) ? ["**/*.test.ts"] : [],
  rules: {
    "no-restricted-imports": [
      "error",
      {
        patterns: [
          {
            regex: `(^|/)(${above.join("|")})/`,
            message: `src/${stage}/ imports only stages below it (see docs/ARCHITECTURE.md)`,
          },
        ],
      },
    ],
  },
}));

export default tseslint.config(
  { ignores: ["node_modules/", ".avocado/", "scratch/", "trainer/", "coverage/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: {
        process: "readonly",
        Buffer: "readonly",
        console: "readonly",
        setTimeout: "readonly",
        clearTimeout: "readonly",
        URL: "readonly",
        TextEncoder: "readonly",
        TextDecoder: "readonly",
        AbortController: "readonly",
        AbortSignal: "readonly",
      },
    },
    plugins: { "@stylistic": stylistic },
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/no-empty-function": "off",
      // Prettier wraps code at 120 but never a comment or a string: comments are held to the same width here.
      "@stylistic/max-len": [
        "error",
        {
          code: 120,
          comments: 120,
          ignoreStrings: true,
          ignoreTemplateLiterals: true,
          ignoreRegExpLiterals: true,
          ignoreUrls: true,
        },
      ],
    },
  },
  // The dashboard's and the playground's scripts run in the browser.
  {
    files: ["src/serve/web/**/*.js"],
    languageOptions: {
      globals: {
        document: "readonly",
        window: "readonly",
        location: "readonly",
        fetch: "readonly",
        FormData: "readonly",
        Node: "readonly",
        crypto: "readonly",
        setInterval: "readonly",
        clearInterval: "readonly",
      },
    },
  },
  ...stageRules,
);
