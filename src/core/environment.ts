import { z } from "zod";
import { InputError } from "./errors.ts";

const environmentSchema = z.object({
  AVOCADO_PYTHON: z.string().min(1).optional(),
  AVOCADO_WORKSPACE: z.string().min(1).optional(),
  AVOCADO_LOG_JSON: z.enum(["0", "1"]).optional(),
});

export type Environment = z.infer<typeof environmentSchema>;

let parsed: Environment | undefined;

/** The process environment, parsed once at the boundary. */
export function environment(): Environment {
  if (parsed) return parsed;
  const result = environmentSchema.safeParse(process.env);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new InputError(`environment variable ${String(issue?.path[0])}: ${issue?.message}`);
  }
  parsed = result.data;
  return parsed;
}
