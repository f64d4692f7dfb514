import { describe, expect, it } from "vitest";
import { grammarSchema } from "./json-schema.ts";

describe("grammarSchema (the JSON schemas the grammar can enforce)", () => {
  it("keeps what the grammar enforces, drops annotations, and makes anyOf its alternation", () => {
    const schema = {
      $schema: "https://json-schema.org/draft/2020-12/schema",
      title: "Order",
      type: "object",
      properties: {
        id: { type: "string", minLength: 3, maxLength: 8, description: "the order's id" },
        items: { type: "array", items: { $ref: "#/$defs/item" }, minItems: 1 },
        note: { anyOf: [{ type: "string" }, { type: "null" }], default: null },
      },
      required: ["id", "items"],
      additionalProperties: false,
      $defs: { item: { type: "object", properties: { sku: { enum: ["a", "b"] } } } },
    };
    expect(grammarSchema(schema)).toEqual({
      type: "object",
      properties: {
        id: { type: "string", minLength: 3, maxLength: 8 },
        items: { type: "array", items: { $ref: "#/$defs/item" }, minItems: 1 },
        note: { oneOf: [{ type: "string" }, { type: "null" }] },
      },
      required: ["id", "items"],
      additionalProperties: false,
      $defs: { item: { type: "object", properties: { sku: { enum: ["a", "b"] } } } },
    });
  });

  it("refuses, naming where, what it would silently not enforce", () => {
    expect(() =>
      grammarSchema({ type: "object", properties: { code: { type: "string", pattern: "^[A-Z]+$" } } }),
    ).toThrow(/schema\.properties\.code\.pattern cannot be enforced/);
    expect(() => grammarSchema({ type: "array", items: { type: "number", minimum: 0 } })).toThrow(
      /schema\.items\.minimum cannot be enforced/,
    );
    expect(() => grammarSchema({ allOf: [{ type: "string" }] })).toThrow(/schema\.allOf/);
    expect(() => grammarSchema({ type: "string", format: "email" })).toThrow(
      /schema\.format "email" cannot be enforced/,
    );
    expect(grammarSchema({ type: "string", format: "date" })).toEqual({ type: "string", format: "date" });
    expect(() => grammarSchema({ oneOf: 3 })).toThrow(/schema\.oneOf must be a non-empty array/);
    expect(() => grammarSchema("string")).toThrow(/schema must be a JSON schema object/);
  });
});
