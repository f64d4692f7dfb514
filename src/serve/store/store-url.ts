import { isAbsolute, join } from "node:path";

/** `sqlite:<relative path>` lives in the workspace. */
export function storeUrl(store: string, workspace: string): string {
  if (!store.startsWith("sqlite:")) return store;
  const path = store.slice("sqlite:".length);
  return path === "" || path === ":memory:" || isAbsolute(path) ? store : `sqlite:${join(workspace, path)}`;
}
