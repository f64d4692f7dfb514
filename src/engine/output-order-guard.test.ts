import type { LlamaContext } from "node-llama-cpp";
import { describe, expect, it } from "vitest";
import { EngineError } from "../core/errors.ts";
import { guardOutputOrder } from "./output-order-guard.ts";

/**
 * The guard's ordering, on a stand-in for node-llama-cpp's native context whose
 * reads finish when the test says (the race itself, on llama.cpp, is tested in
 * embedded-engine.test.ts).
 */
function standIn() {
  const started: number[] = [];
  const finish = new Map<number, () => void>();
  const fail = new Map<number, (error: Error) => void>();
  const native = {
    decodeBatch: async () => undefined,
    sampleToken: (index: number) => {
      started.push(index);
      return new Promise<number>((resolve, reject) => {
        finish.set(index, () => resolve(index));
        fail.set(index, reject);
      });
    },
  };
  return { context: { _ctx: native } as unknown as LlamaContext, native, started, finish, fail };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe("guardOutputOrder", () => {
  it("runs the first read after each decode alone, and the reads after it concurrently", async () => {
    const { context, native, started, finish } = standIn();
    guardOutputOrder(context);
    guardOutputOrder(context); // a second guard on the same context changes nothing
    await native.decodeBatch();
    const reads = [0, 1, 2].map((i) => native.sampleToken(i));
    await tick();
    expect(started).toEqual([0]);
    finish.get(0)!();
    await tick();
    expect(started).toEqual([0, 1, 2]);
    finish.get(2)!();
    finish.get(1)!();
    await expect(Promise.all(reads)).resolves.toEqual([0, 1, 2]);

    // The next decode makes new rows to put in order: its first read runs alone again.
    await native.decodeBatch();
    const next = [3, 4].map((i) => native.sampleToken(i));
    await tick();
    expect(started).toEqual([0, 1, 2, 3]);
    finish.get(3)!();
    await tick();
    expect(started).toEqual([0, 1, 2, 3, 4]);
    finish.get(4)!();
    await Promise.all(next);
  });

  it("lets the reads after a failed first read go on", async () => {
    const { context, native, started, finish, fail } = standIn();
    guardOutputOrder(context);
    await native.decodeBatch();
    const first = native.sampleToken(0);
    const second = native.sampleToken(1);
    await tick();
    expect(started).toEqual([0]);
    fail.get(0)!(new Error("no logits"));
    await expect(first).rejects.toThrow("no logits");
    await tick();
    expect(started).toEqual([0, 1]);
    finish.get(1)!();
    await expect(second).resolves.toBe(1);
  });

  it("refuses a context without the native methods it wraps, rather than serve unguarded", () => {
    expect(() => guardOutputOrder({} as LlamaContext)).toThrow(EngineError);
    expect(() => guardOutputOrder({ _ctx: { decodeBatch: () => undefined } } as unknown as LlamaContext)).toThrow(
      /decodeBatch\/sampleToken/,
    );
  });
});
