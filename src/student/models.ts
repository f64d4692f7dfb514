import type { AvocadoConfig } from "../core/config/schema.ts";
import { teacherConfigSchema, type TeacherConfig } from "../core/config/teacher-schema.ts";
import { SILENT_LOGGER } from "../core/logger.ts";
import { cachedTeacher, modelIdentity, type ResponseCache } from "../evals/cache.ts";
import type { ModelUnderTest } from "../evals/run.ts";
import { findTeacher, openTeacher } from "../teachers/registry.ts";

/** A student's GGUF as a model the harness can ask: embedded, one sequence (one core each). */
export function studentModelConfig(name: string, family: string, gguf: string, maxTokens = 1024): TeacherConfig {
  return teacherConfigSchema.parse({ name, family, transport: "embedded", path: gguf, maxTokens, sequences: 1 });
}

/** Students (by GGUF) and the run's teachers (by name), each behind the evals response cache. */
export async function openEvalModels(options: {
  config: AvocadoConfig;
  workspace: string;
  family: string;
  students: readonly { name: string; gguf: string }[];
  teachers: readonly string[];
  cache: ResponseCache;
  /** Filled as models open, so the caller closes what opened even if a later one fails. */
  into: ModelUnderTest[];
}): Promise<ModelUnderTest[]> {
  const open = async (name: string, config: TeacherConfig) =>
    options.into.push({
      name,
      teacher: cachedTeacher(
        await openTeacher(config, { logger: SILENT_LOGGER }),
        await modelIdentity(config),
        options.cache,
      ),
    });
  for (const student of options.students)
    await open(student.name, studentModelConfig(student.name, options.family, student.gguf));
  for (const name of options.teachers)
    await open(name, (await findTeacher(options.config, options.workspace, name)).config);
  return options.into;
}
