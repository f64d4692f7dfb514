import { obligationsOf } from "../distill/licences.ts";
import type { DistillRunData } from "./run-data.ts";

export interface InheritedLicence {
  teacher: string;
  family: string;
  licence: string;
  /** The student's training records that came from this teacher. */
  records: number;
  obligations: string;
  notice?: { file: string; text: string };
}

/**
 * The obligations the student inherits: from each teacher whose records trained it (per-record lineage), none from a
 * teacher whose every record was left out (weight 0, or none kept).
 */
export function inheritedLicences(run: DistillRunData, lines: readonly number[]) {
  const used = new Map<string, number>();
  for (const line of lines) {
    const teacher = run.records[line]!.teacher;
    used.set(teacher, (used.get(teacher) ?? 0) + 1);
  }
  const inherited: InheritedLicence[] = run.teachers
    .filter((t) => used.has(t.name))
    .map((t) => {
      const licence = typeof t.licence === "string" ? t.licence : JSON.stringify(t.licence);
      return { teacher: t.name, family: t.family, records: used.get(t.name)!, ...obligationsOf(licence) };
    });
  return {
    format: "avocado-licenses/1",
    run: run.folder,
    teachers: inherited,
    notInherited: run.teachers.filter((t) => !used.has(t.name)).map((t) => t.name),
  };
}
