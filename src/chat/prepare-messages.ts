import type { Family } from "../core/family.ts";

/** A chat message with OpenAI's roles (harmony's `developer` included). */
export interface RoleMessage {
  role: "system" | "developer" | "user" | "assistant";
  content: string;
}

/**
 * Messages as the family's chat format accepts them:
 * - Gemma has no system role: system and developer text is merged into the first user turn
 *   (what Gemma 3's own template does; Gemma 2's template refuses a system message outright).
 * - gpt-oss (harmony) keeps `developer` (its instruction role) and `system`.
 * - Qwen and generic templates know `system` only: `developer` becomes `system`.
 */
export function prepareMessages(family: Family, messages: readonly RoleMessage[]): RoleMessage[] {
  if (family === "gptoss") return messages.map((m) => ({ ...m }));
  if (family !== "gemma")
    return messages.map((m) => (m.role === "developer" ? { role: "system", content: m.content } : { ...m }));
  const instructions = messages.filter((m) => m.role === "system" || m.role === "developer").map((m) => m.content);
  const rest = messages.filter((m) => m.role !== "system" && m.role !== "developer").map((m) => ({ ...m }));
  if (instructions.length === 0) return rest;
  const firstUser = rest.find((m) => m.role === "user");
  if (firstUser) firstUser.content = `${instructions.join("\n\n")}\n\n${firstUser.content}`;
  else rest.unshift({ role: "user", content: instructions.join("\n\n") });
  return rest;
}
