import { getLlama, LlamaLogLevel, type Llama } from "node-llama-cpp";

let shared: Promise<Llama> | undefined;

/** The one llama.cpp binding of the process: CPU prebuilt, never built from source at run time. */
export function sharedLlama(): Promise<Llama> {
  shared ??= getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
  return shared;
}
