import { describe, expect, it } from "vitest";
import { JsonLogger } from "./logger.ts";

describe("JsonLogger", () => {
  it("writes a turn's lines together, redacting secrets", async () => {
    const writes: string[] = [];
    const logger = new JsonLogger((text) => writes.push(text), "info");
    logger.addSecret("avo_secret_value");
    logger.log("info", "a", { key: "avo_secret_value" });
    logger.log("debug", "hidden");
    logger.log("info", "b");
    expect(writes).toEqual([]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(writes).toHaveLength(1);
    const lines = writes[0]!
      .trimEnd()
      .split("\n")
      .map((line) => JSON.parse(line) as { event: string; key?: string });
    expect(lines.map((line) => line.event)).toEqual(["a", "b"]);
    expect(lines[0]!.key).toBe("[redacted]");
    // Level, time, the fields and the event; a line without fields is still one JSON object.
    expect(Object.keys(lines[0]!).sort()).toEqual(["event", "key", "level", "time"]);
    expect(Object.keys(lines[1]!).sort()).toEqual(["event", "level", "time"]);
    expect(Date.parse((lines[1] as unknown as { time: string }).time)).toBeGreaterThan(0);
  });

  it("with flushMs, writes the lines of that time together, and an error at once with what waits before it", async () => {
    const writes: string[] = [];
    const logger = new JsonLogger((text) => writes.push(text), "info", { flushMs: 30 });
    logger.log("info", "a");
    logger.log("info", "b");
    await new Promise((resolve) => setImmediate(resolve));
    expect(writes).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect(writes).toHaveLength(1);
    expect(writes[0]!.trimEnd().split("\n")).toHaveLength(2);
    logger.log("info", "c");
    logger.log("error", "boom", { error: new Error("disk full") });
    expect(writes).toHaveLength(2);
    const written = writes[1]!
      .trimEnd()
      .split("\n")
      .map((line) => JSON.parse(line) as { event: string; error?: unknown });
    expect(written).toMatchObject([{ event: "c" }, { event: "boom", error: { name: "Error", message: "disk full" } }]);
  });
});
