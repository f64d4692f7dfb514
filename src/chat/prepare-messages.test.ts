import { describe, expect, it } from "vitest";
import { prepareMessages } from "./prepare-messages.ts";

describe("prepareMessages", () => {
  const messages = [
    { role: "system" as const, content: "Be terse." },
    { role: "developer" as const, content: "Use metric units." },
    { role: "user" as const, content: "How far?" },
    { role: "assistant" as const, content: "10 km." },
    { role: "user" as const, content: "And back?" },
  ];

  it("merges system and developer text into Gemma's first user turn; keeps harmony's developer; maps it to system elsewhere", () => {
    expect(prepareMessages("gemma", messages)).toEqual([
      { role: "user", content: "Be terse.\n\nUse metric units.\n\nHow far?" },
      { role: "assistant", content: "10 km." },
      { role: "user", content: "And back?" },
    ]);
    expect(prepareMessages("gemma", [{ role: "system", content: "Only this." }])).toEqual([
      { role: "user", content: "Only this." },
    ]);
    expect(prepareMessages("gptoss", messages).map((m) => m.role)).toEqual([
      "system",
      "developer",
      "user",
      "assistant",
      "user",
    ]);
    expect(prepareMessages("qwen", messages).map((m) => m.role)).toEqual([
      "system",
      "system",
      "user",
      "assistant",
      "user",
    ]);
    expect(messages[2]!.content).toBe("How far?");
  });
});
