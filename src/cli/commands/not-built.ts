import type { Command } from "commander";
import { NotBuiltError } from "../../core/errors.ts";

/** Stages whose issues have not landed: listed in --help, and say so (exit 2) when run. */
const PLANNED: { name: string; description: string; issue: string }[] = [
  {
    name: "distill",
    description: "turn a prompt set into a training set with several teachers",
    issue: "the distillation issue",
  },
];

export function registerNotBuilt(program: Command): void {
  for (const stage of PLANNED) {
    program
      .command(stage.name)
      .description(`${stage.description} (not built yet)`)
      .allowUnknownOption()
      .allowExcessArguments()
      .action(() => {
        throw new NotBuiltError(stage.name, stage.issue);
      });
  }
}
