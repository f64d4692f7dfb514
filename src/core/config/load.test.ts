import { describe, expect, it } from "vitest";
import { InputError } from "../errors.ts";
import { configJsonSchema, DEFAULT_CONFIG_YAML } from "./default-config.ts";
import { parseConfig } from "./load.ts";

describe("config", () => {
  it("parses the commented default that `avocado init` writes", () => {
    const config = parseConfig(DEFAULT_CONFIG_YAML, "avocado.yaml");
    expect(config.workspace).toBe(".avocado");
    expect(config.tinyworld.size).toBe("default");
  });

  it("names the file, the key path, what was expected and what was found", () => {
    const attempt = () => parseConfig("tinyworld:\n  size: huge\n", "/x/avocado.yaml");
    expect(attempt).toThrow(InputError);
    expect(attempt).toThrow(/\/x\/avocado\.yaml/);
    expect(attempt).toThrow(/tinyworld\.size/);
    expect(attempt).toThrow(/"default"|default/);
    expect(attempt).toThrow(/found string "huge"/);
  });

  it("reports a typo'd key as unknown", () => {
    expect(() => parseConfig("tinyworl:\n  size: test\n", "avocado.yaml")).toThrow(/unknown key 'tinyworl'/);
  });

  it("reports a wrong type with the value found", () => {
    expect(() => parseConfig("train:\n  threads: two\n", "a.yaml")).toThrow(/train\.threads: .*found string "two"/);
  });

  it("reports invalid YAML with the file name", () => {
    expect(() => parseConfig("workspace: [unclosed\n", "bad.yaml")).toThrow(/bad\.yaml is not valid YAML/);
  });

  it("exports a JSON Schema for editors", () => {
    const schema = configJsonSchema() as { properties: Record<string, unknown> };
    expect(Object.keys(schema.properties)).toEqual(
      expect.arrayContaining(["workspace", "python", "tinyworld", "train"]),
    );
  });
});
