import { InputError } from "../core/errors.ts";

/** A CLI option that must be a positive integer, with an error that names the option. */
export function positiveInteger(value: string, option: string): number {
  const number = Number(value);
  if (!Number.isInteger(number) || number < 1)
    throw new InputError(`${option} must be a positive integer (found ${value})`);
  return number;
}
