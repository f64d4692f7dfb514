import { describe, expect, it } from "vitest";
import { Cancel } from "./cancel.ts";

describe("Cancel", () => {
  it("fires once, telling each listener still listening, and its signal aborts with the same reason", () => {
    const cancel = new Cancel();
    const told: string[] = [];
    const first = { handleEvent: () => told.push("first") };
    const second = { handleEvent: () => told.push("second") };
    cancel.listen(first);
    cancel.listen(second);
    cancel.unlisten(first);
    const reason = new Error("the client disconnected");
    cancel.abort(reason);
    cancel.abort(new Error("again"));
    expect(told).toEqual(["second"]);
    expect(cancel.aborted).toBe(true);
    expect(cancel.reason).toBe(reason);
    // A signal asked for after the fact is already aborted, with the first reason.
    expect(cancel.signal.aborted).toBe(true);
    expect(cancel.signal.reason).toBe(reason);
    // Listening after it fired tells nothing (callers check `aborted` first).
    cancel.listen({ handleEvent: () => told.push("late") });
    expect(told).toEqual(["second"]);
  });

  it("makes its AbortSignal only when asked, and aborts it when it fires", () => {
    const cancel = new Cancel();
    expect(cancel["controller"]).toBeUndefined();
    const signal = cancel.signal;
    expect(signal.aborted).toBe(false);
    cancel.abort(new Error("stop"));
    expect(signal.aborted).toBe(true);
    expect((signal.reason as Error).message).toBe("stop");
  });

  it("follows an AbortSignal (a timeout), and a child fires with its parent or on its own", async () => {
    const timed = Cancel.from(AbortSignal.timeout(5));
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(timed.aborted).toBe(true);
    expect((timed.reason as DOMException).name).toBe("TimeoutError");
    const parent = new Cancel();
    const alone = parent.child();
    const together = parent.child();
    alone.abort(new Error("another choice failed"));
    expect(parent.aborted).toBe(false);
    expect(together.aborted).toBe(false);
    parent.abort(new Error("the client disconnected"));
    expect(together.aborted).toBe(true);
    expect((together.reason as Error).message).toBe("the client disconnected");
    expect((alone.reason as Error).message).toBe("another choice failed");
  });
});
