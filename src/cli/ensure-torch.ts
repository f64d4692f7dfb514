import { EngineError } from "../core/errors.ts";
import { torchVersion } from "../core/python.ts";

/** Fails with the set-up command when the configured Python cannot import torch. */
export function ensureTorch(python: string): string {
  const version = torchVersion(python);
  if (!version) {
    throw new EngineError(
      `${python} cannot import torch. Run 'npm run setup' (installs Debian's python3-torch and libopenblas0-pthread), or point AVOCADO_PYTHON at a Python with torch.`,
    );
  }
  return version;
}
