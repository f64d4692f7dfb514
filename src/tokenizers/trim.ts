import { InputError } from "../core/errors.ts";
import { TokenType, type ReferenceTokenizer } from "./reference-tokenizer.ts";

/**
 * A family's tokenizer trimmed to the ids a corpus uses: those ids, the closure
 * of their merge ancestors, the byte tokens and the special tokens, renumbered in
 * their original order. `fullIds[trimmedId]` is the family's real id, so logprobs
 * and token counts can always be translated back.
 */
export class TrimmedVocabulary {
  readonly fullIds: readonly number[];
  private readonly toTrimmed: Map<number, number>;

  constructor(
    readonly reference: ReferenceTokenizer,
    fullIds: readonly number[],
  ) {
    this.fullIds = fullIds;
    this.toTrimmed = new Map(fullIds.map((full, trimmed) => [full, trimmed]));
  }

  get size(): number {
    return this.fullIds.length;
  }

  has(fullId: number): boolean {
    return this.toTrimmed.has(fullId);
  }

  fromFull(fullIds: readonly number[]): number[] {
    return fullIds.map((id) => {
      const trimmed = this.toTrimmed.get(id);
      if (trimmed === undefined) {
        throw new InputError(
          `token ${id} (${JSON.stringify(this.reference.tokenString(id))}) is not in the trimmed ${this.reference.family} vocabulary`,
        );
      }
      return trimmed;
    });
  }

  /** The trimmed id of one real id, or undefined when the trimmed vocabulary lacks it. */
  fromFullId(fullId: number): number | undefined {
    return this.toTrimmed.get(fullId);
  }

  toFull(trimmedIds: readonly number[]): number[] {
    return trimmedIds.map((id) => {
      const full = this.fullIds[id];
      if (full === undefined) throw new InputError(`trimmed token id ${id} is out of range (size ${this.size})`);
      return full;
    });
  }

  /** The trimmed id of a role token (bos, eos, ...), or undefined when the family has none. */
  role(name: "bos" | "eos" | "eot" | "pad" | "unk"): number | undefined {
    const full = this.reference.roles[name];
    return full === undefined ? undefined : this.toTrimmed.get(full);
  }
}

/** Builds the trimmed vocabulary for a set of used ids. */
export function trimVocabulary(
  reference: ReferenceTokenizer,
  usedIds: Iterable<number>,
  extraSpecials: Iterable<number> = [],
): TrimmedVocabulary {
  const kept = new Set<number>();
  const queue: number[] = [];
  const add = (id: number) => {
    if (!kept.has(id)) {
      kept.add(id);
      queue.push(id);
    }
  };
  for (const id of usedIds) add(id);
  for (const id of reference.baseTokens()) add(id);
  for (const id of extraSpecials) add(id);
  for (const role of [
    reference.roles.bos,
    reference.roles.eos,
    reference.roles.eot,
    reference.roles.pad,
    reference.roles.unk,
  ]) {
    if (role !== undefined) add(role);
  }
  while (queue.length > 0) {
    const id = queue.pop() as number;
    if (reference.tokenType(id) === TokenType.normal)
      for (const ancestor of reference.mergeAncestors(id)) add(ancestor);
  }
  return new TrimmedVocabulary(
    reference,
    [...kept].sort((a, b) => a - b),
  );
}
