import type { Store } from "../serve/store/store.ts";
import type { CommandContext } from "./context.ts";

/** The store of the configured serve section (keys and billing commands); loaded on use. */
export async function openConfiguredStore(context: CommandContext, override?: string): Promise<Store> {
  const [{ Store: StoreClass }, { storeUrl }] = await Promise.all([
    import("../serve/store/store.ts"),
    import("../serve/store/store-url.ts"),
  ]);
  return StoreClass.open(storeUrl(override ?? context.config.serve.store, context.workspace));
}
