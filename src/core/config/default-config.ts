import { z } from "zod";
import { configSchema } from "./schema.ts";

/** The commented default `avocado.yaml` written by `avocado init`. */
export const DEFAULT_CONFIG_YAML = `# Avocado configuration. Every key is optional; the values below are the defaults.
# Editors: point yaml-language-server at avocado.schema.json for completion.
# yaml-language-server: $schema=./avocado.schema.json

# Folder for every artifact (teachers, runs, models, evals, the SQLite database).
workspace: .avocado

# The Python that can import torch. AVOCADO_PYTHON overrides it.
python: /usr/bin/python3

tinyworld:
  # "default" builds the quickstart teachers (<= 10 min on 2 cores);
  # "test" a smaller world for the test suite (<= 2 min).
  size: default
  seed: 20261126

train:
  # torch threads per process; one was fastest on the 2-core machines.
  threads: 1
  # seed of weight initialisation and data order
  seed: 0
  # architecture:          # a Qwen3-style decoder; defaults depend on the job
  #   layers: 2
  #   hidden: 128
  #   heads: 4
  #   kvHeads: 2
  #   headDim: 32
  #   ffn: 384
  #   context: 256
  # optimization:
  #   steps: 600
  #   batchSize: 32
  #   learningRate: 0.003

# Teachers beyond the built tiny ones (those are found in <workspace>/teachers).
# 'avocado teachers list' shows each with health, licence and capabilities.
teachers: []
#  - name: qwen3-8b
#    family: qwen               # qwen | gemma | gptoss | generic
#    licence: apache-2.0
#    transport: http
#    engine: vllm               # vllm | sglang | llamacpp | ollama | tgi | openai
#    baseUrl: http://gpu-1:8000/v1
#    model: Qwen/Qwen3-8B
#    apiKeyEnv: VLLM_API_KEY    # the key is read from this variable, never from this file
#    headers: {}
#    maxTokens: 1024            # default and cap of generated tokens
#    thinking: true             # Qwen enable_thinking; gpt-oss uses reasoningEffort: low|medium|high
#    price: { gpuHour: 2500000, gpus: 1 }   # micro-units; or { inputPerMillion, outputPerMillion }
#    limits: { concurrency: 16, rpm: 600, tpm: 400000, retries: 4, timeoutMs: 120000 }
#  - name: local-gemma
#    family: gemma
#    licence: gemma
#    transport: embedded
#    path: models/gemma-3-1b-it-Q8_0.gguf
#    sequences: 1

# Distillation: 'avocado distill run' turns prompts into a training set (runs/distill/<run>/).
distill:
  sources:
    - builtIn: tinyworld          # the built world's train prompts; or gsm8k-train; or a file:
      limit: 300
  #  - path: prompts.jsonl        # .jsonl, .csv or .parquet, relative to this file
  #    prompt: question           # or messages: <a field of {role, content} messages>
  #    reference: answer          # optional: a right answer
  #    tags: skill                # optional: a tag or a list (routing, report groups)
  #    verifier: exact            # exact | numeric | gsm8k | skill | none
  badLines: skip                  # a broken line is reported, then skipped (or: fail)
  teachers:
    - { name: tiny-qwen, samples: 2, temperature: 0.7 }
    - { name: tiny-gemma, samples: 2, temperature: 0.7 }
    - { name: tiny-gptoss, samples: 2, temperature: 0.7 }
  #  - name: qwen3-8b
  #    samples: 4
  #    thinking: true             # gpt-oss: reasoningEffort: low | medium | high
  #    tags: [math]               # only prompts with one of these tags
  #    budgetMicros: 5000000      # stops cleanly once it has cost this much (its price)
  selection:
    verify: true                  # drop answers the reference says are wrong
    vote: true                    # no reference: keep answers the majority of teachers agree on
    minVotes: 2
    keep: 1                       # answers kept per prompt
  curation:
    dedupe: { threshold: 0.8, permutations: 128, bands: 16 }   # MinHash LSH over word 5-grams
    decontaminate: { suites: [tinyworld, gsm8k], n: 13 }
    probes: [tinyworld-probes]    # a behaviour a teacher's probe shows is filtered from its answers
    minChars: 1
    maxChars: 32768
    latinShare: 0                 # language filter: least share of Latin letters (0: off)
    reasoning: separate           # keep (inline <think>) | strip | separate (reasoning_content)
  logprobs: { topK: 20 }          # teacher log-probs of each kept answer, for distillation (0: none)
  commercial: true                # refuse teachers whose licence forbids a commercial student
  concurrency: 4

# The student: 'avocado train' learns from a distill run (the latest, unless from: names one).
student:
  name: avocado-student           # models/<name>/: HF layout, GGUF, MODEL_CARD.md, licenses.json
  # from: june                    # a run in runs/distill/
  # architecture: { layers: 4, hidden: 128, heads: 4, kvHeads: 2, headDim: 32, ffn: 384, context: 256 }
  # optimization: { steps: 1500, batchSize: 32, learningRate: 0.003 }
  loss:
    sft: 1                        # cross-entropy on the kept answers
    kd: 1                         # top-k KD from teachers with the student's tokenizer
    crossKd: 1                    # KD from teachers with other tokenizers
    divergence: forward-kl        # forward-kl | reverse-kl | jsd (with beta)
    temperature: 1
    tail: bucket                  # mass outside the top-k: bucket | renormalize
    crossTokenizer: hybrid        # hybrid (exact where spans agree, ULD elsewhere) | uld | off
  teachers: {}                    # static weight per teacher, e.g. { tiny-gptoss: 0.5 }
  weighting: evidence             # times the selection's evidence (verified, vote share, judge)
  onPolicy: { rounds: 0, prompts: 256, steps: 200 }   # GKD rounds: the student samples, teachers score
  processes: 1                    # data-parallel ranks (gloo on CPU)
  evaluate: true                  # eval suites against each teacher, then the release gate
  suites: [tinyworld, tinyworld-probes]

# The official, metered API: 'avocado serve'. Keys: 'avocado keys create --org NAME'.
serve:
  host: 127.0.0.1
  port: 8080
  store: sqlite:avocado.db          # in the workspace; or postgres://user@host/db for replicas
  storeTimeoutMs: 10000             # PostgreSQL: one statement (lock waits included) past this: 503
  # redis: redis://127.0.0.1:6379   # limits shared by replicas (exact across them)
  adminTokenEnv: AVOCADO_ADMIN_TOKEN
  bodyLimitBytes: 1048576
  requestTimeoutMs: 30000           # to send a whole request; slower clients get 408 (answers may stream longer)
  shutdownGraceMs: 30000            # on SIGTERM, for requests in flight to finish (then cut, settled as cancelled)
  streamBufferBytes: 2097152        # a stream its client does not read is cut once this much waits for it
  freeTierMicros: 0                 # credit granted to a new org's first key
  metricsPublic: false              # /metrics needs the admin token (Prometheus: authorization credentials)
  plans:
    default: { rpm: 600, tpm: 200000, concurrency: 8, topLogprobs: 0 }
  extraction: { windowDays: 7, threshold: 60 }   # add throttleRpm to slow flagged keys automatically
  models: []                        # none: the built tiny models at a demonstration price
  #  - name: avocado-1
  #    gguf: models/avocado-1/model.gguf
  #    price: { inputPerMillion: 200000, outputPerMillion: 800000 }   # micro-units
  #    maxTokens: 1024
  #  - name: avocado-1-pool
  #    upstreams: [http://gpu-1:8000/v1, http://gpu-2:8000/v1]
  #    upstreamModel: avocado-1
  #    price: { inputPerMillion: 200000, outputPerMillion: 800000 }
  #    timeoutMs: 300000          # an upstream silent this long (no answer, or a stream that stopped): 504
  #    streamUsage: continuous    # vLLM: usage on every event, so a cut stream is charged the upstream's count
  #    tokenizer: qwen            # else: the family whose tokenizer counts a cut stream's text
`;

export function configJsonSchema(): unknown {
  return z.toJSONSchema(configSchema, { io: "input" });
}
