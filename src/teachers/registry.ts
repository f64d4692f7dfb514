import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { basename, isAbsolute, join, resolve } from "node:path";
import type { AvocadoConfig } from "../core/config/schema.ts";
import { DEFAULT_LIMITS, type TeacherConfig } from "../core/config/teacher-schema.ts";
import { InputError } from "../core/errors.ts";
import { SILENT_LOGGER, type Logger } from "../core/logger.ts";
import type { TeacherCard } from "../tinyworld/build-teacher.ts";
import { EmbeddedTeacher } from "./embedded-teacher.ts";
import { checkGguf } from "../engine/gguf-check.ts";
import { familyOfTemplate, loadGenericTemplate } from "./families.ts";
import { HttpTeacher } from "./http/http-teacher.ts";
import { ScheduledTeacher } from "./scheduling/scheduled-teacher.ts";

/** Licences under which a model may not teach a commercial student (docs/licences.md). */
const REFUSED_LICENCES = /research|non-?commercial|tongyi/i;

export interface TeacherEntry {
  config: TeacherConfig;
  /** Where the entry came from: the config file, or a built tiny-world teacher. */
  source: "config" | "tinyworld";
  licence: string;
  /** Set when the licence forbids distilling into a commercial student. */
  refused?: string;
}

function describeLicence(config: TeacherConfig, fallback?: string): Pick<TeacherEntry, "licence" | "refused"> {
  const licence = config.licence ?? fallback ?? "unknown";
  return REFUSED_LICENCES.test(licence)
    ? { licence, refused: `the ${licence} licence forbids training a commercial model on its outputs` }
    : { licence };
}

/** Every teacher known to a workspace: the configured ones, then the built tiny-world teachers not shadowed by them. */
export async function teacherEntries(config: AvocadoConfig, workspace: string): Promise<TeacherEntry[]> {
  const entries: TeacherEntry[] = config.teachers.map((c) => ({ config: c, source: "config", ...describeLicence(c) }));
  const folder = join(workspace, "teachers");
  if (!existsSync(folder)) return entries;
  for (const dirent of (await readdir(folder, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
    const cardPath = join(folder, dirent.name, "card.json");
    if (!dirent.isDirectory() || !existsSync(cardPath) || entries.some((e) => e.config.name === dirent.name)) continue;
    const card = JSON.parse(await readFile(cardPath, "utf8")) as TeacherCard;
    const teacher: TeacherConfig = {
      name: card.name,
      family: card.family as TeacherConfig["family"],
      transport: "embedded",
      path: join(folder, dirent.name, "model.gguf"),
      maxTokens: 256,
      // One sequence: on 2 cores, concurrent llama.cpp sequences of a tiny model ran slower in total than one
      // (bench/teachers: 4 → 129 tok/s, 1 → 490).
      sequences: 1,
      limits: DEFAULT_LIMITS,
    };
    entries.push({ config: teacher, source: "tinyworld", ...describeLicence(teacher, card.licence.name) });
  }
  return entries;
}

/** A teacher by name, or any GGUF file by path (its family read from the file). */
export async function findTeacher(config: AvocadoConfig, workspace: string, name: string): Promise<TeacherEntry> {
  if (name.endsWith(".gguf")) {
    const path = resolve(name);
    const family = await ggufFamily(path);
    const teacher: TeacherConfig = {
      name: basename(path),
      family,
      transport: "embedded",
      path,
      maxTokens: 1024,
      sequences: 1,
      limits: DEFAULT_LIMITS,
    };
    return { config: teacher, source: "config", licence: "unknown" };
  }
  const entries = await teacherEntries(config, workspace);
  const entry = entries.find((e) => e.config.name === name);
  if (!entry)
    throw new InputError(
      `no teacher named '${name}' (known: ${entries.map((e) => e.config.name).join(", ") || "none; run 'avocado tinyworld build' or add teachers to avocado.yaml"})`,
    );
  return entry;
}

/** The family a GGUF declares: our exporter's record, else its chat template's markers, else generic. */
export async function ggufFamily(path: string): Promise<TeacherConfig["family"]> {
  const metadata = (await checkGguf(path)).metadata as unknown as {
    avocado?: { tokenizer?: { family?: unknown } };
    tokenizer?: { chat_template?: unknown };
  };
  const recorded = metadata.avocado?.tokenizer?.family;
  if (recorded === "qwen" || recorded === "gemma" || recorded === "gptoss") return recorded;
  const template = metadata.tokenizer?.chat_template;
  return (typeof template === "string" ? familyOfTemplate(template) : undefined) ?? "generic";
}

function reasoningDefaults(config: TeacherConfig) {
  return { thinking: config.thinking, reasoningEffort: config.reasoningEffort };
}

export interface OpenOptions {
  /** Relative paths in the config resolve against this folder. */
  baseDirectory?: string;
  logger?: Logger;
  environment?: NodeJS.ProcessEnv;
}

/**
 * Opens a teacher behind its scheduler (limits, retries, breaker). The API key comes from the configured environment
 * variable.
 */
export async function openTeacher(config: TeacherConfig, options: OpenOptions = {}): Promise<ScheduledTeacher> {
  const logger = options.logger ?? SILENT_LOGGER;
  const path = (p: string) => (isAbsolute(p) ? p : resolve(options.baseDirectory ?? process.cwd(), p));
  if (config.transport === "embedded") {
    const inner = await EmbeddedTeacher.open({
      name: config.name,
      family: config.family,
      path: path(config.path),
      chatTemplate: config.chatTemplate ? path(config.chatTemplate) : undefined,
      sequences: config.sequences,
      maxTokens: config.maxTokens,
      price: config.price,
    });
    return new ScheduledTeacher(inner, {
      limits: { ...config.limits, concurrency: Math.min(config.limits.concurrency, config.sequences) },
      logger,
      defaults: reasoningDefaults(config),
    });
  }
  const environment = options.environment ?? process.env;
  let apiKey: string | undefined;
  if (config.apiKeyEnv) {
    apiKey = environment[config.apiKeyEnv];
    if (!apiKey)
      throw new InputError(
        `teacher '${config.name}': the environment variable ${config.apiKeyEnv} (its API key) is not set`,
      );
    logger.addSecret(apiKey);
  }
  for (const [name, value] of Object.entries(config.headers))
    if (/auth|key|token|secret|cookie/i.test(name)) logger.addSecret(value);
  const inner = new HttpTeacher({
    name: config.name,
    family: config.family,
    engine: config.engine,
    baseUrl: config.baseUrl,
    model: config.model,
    apiKey,
    headers: config.headers,
    maxTokens: config.maxTokens,
    maxResponseBytes: config.maxResponseBytes,
    price: config.price,
    concurrency: config.limits.concurrency,
    template: config.chatTemplate ? await loadGenericTemplate(path(config.chatTemplate)) : undefined,
  });
  return new ScheduledTeacher(inner, { limits: config.limits, logger, defaults: reasoningDefaults(config) });
}
