/**
 * A compact Jinja rendering of OpenAI's harmony format (system header, developer
 * instructions, analysis/final channels), written for this project and stored in
 * gpt-oss-family GGUFs so that other engines can chat with them. The engine itself
 * uses node-llama-cpp's HarmonyChatWrapper.
 */
export const HARMONY_CHAT_TEMPLATE = [
  "{%- set reasoning = reasoning_effort | default('medium') -%}",
  "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: 2024-06\nCurrent date: {{ strftime_now('%Y-%m-%d') if strftime_now is defined else '2025-08-05' }}\n\nReasoning: {{ reasoning }}\n\n# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|>",
  "{%- for message in messages -%}",
  "{%- if message.role == 'system' or message.role == 'developer' -%}",
  "<|start|>developer<|message|># Instructions\n\n{{ message.content }}<|end|>",
  "{%- elif message.role == 'user' -%}",
  "<|start|>user<|message|>{{ message.content }}<|end|>",
  "{%- elif message.role == 'assistant' -%}",
  "{%- if message.thinking is defined and message.thinking and loop.last -%}<|start|>assistant<|channel|>analysis<|message|>{{ message.thinking }}<|end|>{%- endif -%}",
  "<|start|>assistant<|channel|>final<|message|>{{ message.content }}{{ '<|return|>' if loop.last else '<|end|>' }}",
  "{%- endif -%}",
  "{%- endfor -%}",
  "{%- if add_generation_prompt -%}<|start|>assistant{%- endif -%}",
].join("");
