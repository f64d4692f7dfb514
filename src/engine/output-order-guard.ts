import type { LlamaContext } from "node-llama-cpp";
import { EngineError } from "../core/errors.ts";

/** The part of node-llama-cpp's native context (its private `_ctx`) that the guard wraps. */
interface NativeContext {
  decodeBatch(...args: unknown[]): Promise<unknown>;
  sampleToken(...args: unknown[]): Promise<unknown>;
}

const GUARDED = Symbol("avocado.outputOrderGuard");

/**
 * Makes the first read of a batch's outputs run alone.
 *
 * When one batch holds several sequences, llama.cpp may compute their output
 * rows out of batch order; it puts them back in order lazily, on the first
 * read of the logits after the decode (`llama_context::output_reorder`, called
 * by `llama_get_logits` and `llama_get_logits_ith`), and takes no lock to do it.
 * node-llama-cpp samples every sequence of a batch at once, each on its own
 * thread-pool thread, so two of those first reads can swap the same rows
 * concurrently: a sequence then samples from another sequence's logits, or from
 * a mix of both, and one client's answer is computed on another client's
 * prompt. Measured with 8 sequences of unequal prompts in one batch: 23 of
 * 2,400 next tokens came from another sequence (see the engine test).
 *
 * After each decode, the first sampling runs alone; once it has put the rows
 * in order, the others read them concurrently as before (reads no longer
 * write). One sequence per context never needs the guard, but it costs one
 * settled promise per sampling, so every context gets it.
 */
export function guardOutputOrder(context: LlamaContext): void {
  const native = (context as unknown as { _ctx?: Partial<NativeContext> & { [GUARDED]?: true } })._ctx;
  if (!native || typeof native.decodeBatch !== "function" || typeof native.sampleToken !== "function") {
    // Refusing is safer than serving answers that may belong to another request.
    throw new EngineError(
      "node-llama-cpp's context no longer has the decodeBatch/sampleToken methods the output-order guard wraps; check the guard against this version",
    );
  }
  if (native[GUARDED]) return;
  const decode = native.decodeBatch.bind(native);
  const sample = native.sampleToken.bind(native);
  /** Whether no output of the last decode has been read yet. */
  let unread = false;
  /** Settles when the first read after the last decode is done. */
  let firstRead: Promise<unknown> = Promise.resolve();
  // The native methods are read-only on the prototype: the wrappers are own properties of this context.
  Object.defineProperties(native, {
    decodeBatch: {
      value: async (...args: unknown[]) => {
        try {
          return await decode(...args);
        } finally {
          unread = true;
        }
      },
    },
    sampleToken: {
      value: (...args: unknown[]) => {
        if (unread) {
          unread = false;
          const read = sample(...args);
          firstRead = read.then(
            () => undefined,
            () => undefined,
          );
          return read;
        }
        return firstRead.then(() => sample(...args));
      },
    },
    [GUARDED]: { value: true },
  });
}
