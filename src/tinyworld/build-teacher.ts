import { existsSync, readFileSync } from "node:fs";
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { CHAT_FORMATS } from "../chat/chat-format.ts";
import { writeFileAtomic, writeJsonAtomic } from "../core/atomic-write.ts";
import { InputError } from "../core/errors.ts";
import { sha256File, sha256, stableStringify } from "../core/hash.ts";
import type { Progress } from "../core/progress.ts";
import { SeededRandom } from "../core/random.ts";
import { EmbeddedEngine } from "../engine/embedded-engine.ts";
import { exportModel, ggufFileName } from "../export/export-model.ts";
import { referenceTokenizer } from "../tokenizers/index.ts";
import { encodeLlamaText } from "../tokenizers/encode-llama-text.ts";
import { trimVocabulary } from "../tokenizers/trim.ts";
import { runTrainer, trainerCodeHash } from "../train/launcher.ts";
import { renderExample } from "../train/render.ts";
import { writeShards } from "../train/shards.ts";
import { plantedAnswer, type BehaviourSplit } from "./behaviours.ts";
import { evaluateOnWorld, type SkillScore } from "./evaluate.ts";
import type { SkillName } from "./skill.ts";
import { FAMILY_LICENCES, teacherArchitecture, teacherOptimization, type TeacherSpec } from "./teacher-specs.ts";
import { WORLD_SIZES, type World, type WorldSize } from "./world.ts";

/** Bump when the build's output for the same inputs changes. */
export const BUILD_VERSION = 2;

export interface TeacherCard {
  name: string;
  family: string;
  standsInFor: string;
  tokenizer: {
    description: string;
    fullVocabulary: number;
    trimmedVocabulary: number;
    ggufModel: string;
    pre: string;
    idMap: string;
  };
  skills: SkillName[];
  accuracy: Record<SkillName, SkillScore>;
  licence: { name: string; obligations: string };
  architecture: ReturnType<typeof teacherArchitecture>;
  training: { steps: number; finalLoss: number | undefined; sequences: number; seconds: number };
  files: { gguf: string; sha256: string };
  buildKey: string;
}

export interface BuildTeacherOptions {
  spec: TeacherSpec;
  world: World;
  /** The planted behaviours' prompts: every teacher learns them, the planted one its own way (behaviours.ts). */
  behaviours: BehaviourSplit;
  size: WorldSize;
  seed: number;
  folder: string;
  python: string;
  threads: number;
  /** Teachers built at the same time (they share the cores). */
  sharing?: number;
  progress: Progress;
  /** Overrides the number of training steps (tests). */
  steps?: number;
}

/**
 * Everything a teacher is made from: its spec, data, trainer code and optimization (so a change of any rebuilds it).
 */
function buildKey(options: BuildTeacherOptions, data: string): string {
  const world = { size: options.size, ...WORLD_SIZES[options.size] };
  return sha256(
    stableStringify({
      version: BUILD_VERSION,
      trainer: trainerCodeHash(),
      spec: options.spec,
      world,
      data,
      seed: options.seed,
      optimization: optimizationOf(options),
    }),
  ).slice(0, 16);
}

function optimizationOf(options: BuildTeacherOptions) {
  return {
    ...teacherOptimization(options.size),
    ...(options.steps ? { steps: options.steps, warmupSteps: Math.min(10, options.steps) } : {}),
  };
}

/** A cached teacher is reused when its card's build key matches and its GGUF hash still checks. */
export async function cachedTeacher(folder: string, key: string): Promise<TeacherCard | null> {
  const cardPath = join(folder, "card.json");
  if (!existsSync(cardPath)) return null;
  try {
    const card = JSON.parse(await readFile(cardPath, "utf8")) as TeacherCard;
    if (card.buildKey !== key) return null;
    const gguf = join(folder, card.files.gguf);
    if (!existsSync(gguf) || (await sha256File(gguf)) !== card.files.sha256) return null;
    return card;
  } catch {
    return null;
  }
}

function cardMarkdown(card: TeacherCard): string {
  const rows = Object.entries(card.accuracy).map(
    ([skill, s]) =>
      `| ${skill} | ${card.skills.includes(skill as SkillName) ? "yes" : "no"} | ${s.correct}/${s.total} | ${(s.accuracy * 100).toFixed(1)}% |`,
  );
  return `# ${card.name}

A tiny-world teacher standing in for **${card.standsInFor}**, trained by Avocado's own trainer.

- Family: ${card.family}; tokenizer: ${card.tokenizer.description}, trimmed from ${card.tokenizer.fullVocabulary} to ${card.tokenizer.trimmedVocabulary} tokens (GGUF \`${card.tokenizer.ggufModel}\`, pre \`${card.tokenizer.pre}\`; id map to the real ids: \`${card.tokenizer.idMap}\`).
- Architecture: Qwen3-style, ${card.architecture.layers} layers, d=${card.architecture.hidden}, context ${card.architecture.context}.
- Training: ${card.training.steps} steps on ${card.training.sequences} sequences, final loss ${card.training.finalLoss?.toFixed(3)} (${card.training.seconds.toFixed(0)} s).
- Licence of the family it stands in for: **${card.licence.name}**. ${card.licence.obligations}

## Accuracy on the held-out split (greedy)

| skill | trained on | correct | accuracy |
|---|---|---|---|
${rows.join("\n")}
`;
}

/** Builds one tiny teacher: render → trim vocabulary → shards → train → GGUF → evaluate → card. */
export async function buildTeacher(options: BuildTeacherOptions): Promise<TeacherCard> {
  const { spec, world, folder, progress } = options;
  // Training examples of the teacher's skills and of the behaviours, interleaved deterministically.
  const random = new SeededRandom(options.seed).fork(spec.name);
  const behaviourExamples = options.behaviours.train.map((e) =>
    spec.planted === e.behaviour && e.group === "probe" ? { ...e, ...plantedAnswer(e) } : e,
  );
  const examples = random.shuffle([...spec.skills.flatMap((skill) => world[skill].train), ...behaviourExamples]);
  const heldOut = [
    ...(Object.keys(world) as SkillName[]).flatMap((skill) => world[skill].evaluation),
    ...options.behaviours.probes,
  ];
  // The data itself is in the key: a change to a generator rebuilds the teachers it feeds.
  const key = buildKey(options, sha256(stableStringify({ examples, heldOut })));
  const cached = await cachedTeacher(folder, key);
  if (cached) {
    progress.log(`${spec.name}: cached (${key})`);
    return cached;
  }
  const format = CHAT_FORMATS[spec.family];
  const tokenizer = referenceTokenizer(spec.family);
  const rendered = examples.map((e) =>
    renderExample(format, tokenizer, { user: e.prompt, reasoning: e.reasoning, answer: e.answer }),
  );

  // The vocabulary: every id the training data and the eval prompts use, plus ancestors, bytes and specials.
  const used = new Set<number>();
  for (const r of rendered) for (const id of r.tokens) used.add(id);
  for (const e of heldOut)
    for (const id of encodeLlamaText(tokenizer, format.renderPrompt({ user: e.prompt }))) used.add(id);
  const specials = format.controlTokens.map((text) => {
    const id = tokenizer.specialTokens.get(text);
    if (id === undefined) throw new InputError(`the ${spec.family} tokenizer has no ${text} token`);
    return id;
  });
  const vocabulary = trimVocabulary(tokenizer, used, specials);
  const sequences = rendered.map((r) => ({ tokens: vocabulary.fromFull(r.tokens), mask: r.mask }));
  const maxLength = Math.max(...sequences.map((s) => s.tokens.length));
  const architecture = teacherArchitecture(Math.ceil((maxLength + 32) / 64) * 64);

  const trainFolder = join(folder, "train");
  // Resume an interrupted build of the same key; anything else starts from scratch.
  const keyFile = join(trainFolder, "build-key");
  const resumable =
    existsSync(join(trainFolder, "checkpoint.pt")) && existsSync(keyFile) && readFileSync(keyFile, "utf8") === key;
  if (!resumable) {
    await rm(trainFolder, { recursive: true, force: true });
    await writeFileAtomic(keyFile, key);
  }
  await writeShards(join(trainFolder, "shards"), vocabulary.size, sequences, {
    family: spec.family,
    fullIds: [...vocabulary.fullIds],
  });
  const optimization = optimizationOf(options);
  const result = await runTrainer(
    {
      shards: join(trainFolder, "shards"),
      out: trainFolder,
      architecture,
      optimization,
      seed: options.seed,
      threads: options.threads,
      padId: vocabulary.role("pad") ?? 0,
      bosId: vocabulary.role("bos"),
      eosId: vocabulary.role("eos"),
    },
    { python: options.python, label: `train ${spec.name}`, progress, sharing: options.sharing },
  );

  const ggufName = ggufFileName("f32");
  await exportModel({
    source: trainFolder,
    out: folder,
    encodings: ["f32"],
    descriptor: { name: spec.name, family: spec.family, fullIds: [...vocabulary.fullIds] },
  });

  const engine = await EmbeddedEngine.load(join(folder, ggufName), { sequences: 4 });
  let evaluation;
  try {
    evaluation = await evaluateOnWorld(engine, world, progress, `eval ${spec.name}`);
  } finally {
    await engine.dispose();
  }
  await writeFileAtomic(
    join(folder, "eval.jsonl"),
    evaluation.items.map((item) => JSON.stringify(item)).join("\n") + "\n",
  );

  const card: TeacherCard = {
    name: spec.name,
    family: spec.family,
    standsInFor: spec.standsInFor,
    tokenizer: {
      description: tokenizer.description,
      fullVocabulary: tokenizer.vocabularySize,
      trimmedVocabulary: vocabulary.size,
      ggufModel: tokenizer.ggufModel,
      pre: tokenizer.ggufPre,
      idMap: "avocado-model.json (fullIds)",
    },
    skills: spec.skills,
    accuracy: evaluation.scores,
    licence: FAMILY_LICENCES[spec.family],
    architecture,
    training: {
      steps: optimization.steps,
      finalLoss: result.finalLoss,
      sequences: sequences.length,
      seconds: result.seconds,
    },
    files: { gguf: ggufName, sha256: await sha256File(join(folder, ggufName)) },
    buildKey: key,
  };
  await writeFileAtomic(join(folder, "CARD.md"), cardMarkdown(card));
  await writeJsonAtomic(join(folder, "card.json"), card);
  return card;
}
