/**
 * What a closed, paid-API student inherits from a teacher's licence (docs/licences.md; a summary for engineers, not
 * legal advice). Teachers whose licence forbids training a commercial model are refused before any call (the
 * registry's `refused`).
 */
export interface Obligation {
  licence: string;
  obligations: string;
  /** A notice file the student's distribution must carry, with its text. */
  notice?: { file: string; text: string };
}

const RULES: { match: RegExp; obligations: string; notice?: Obligation["notice"] }[] = [
  {
    match: /gemma/i,
    obligations:
      "A model distilled from Gemma outputs is a Model Derivative (Gemma Terms of Use §1.1(e)). Serving it through an " +
      "API is distribution: pass the §3.2 use restrictions into the API's terms, give users notice and a copy of the " +
      "terms, and carry the notice below; the Prohibited Use Policy binds the operator and the customers.",
    notice: {
      file: "NOTICE-gemma.txt",
      text: "Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms\n",
    },
  },
  {
    match: /llama/i,
    obligations:
      'Say "Built with Llama"; a model trained on Llama outputs that is made available must have a name starting ' +
      'with "Llama"; a licence is needed past 700 million monthly active users.',
  },
  {
    match: /qwen.*(licen[cs]e )?agreement/i,
    obligations:
      'Say "Built with Qwen" or "Improved using Qwen" in the product\'s documentation; a licence is needed past 100 ' +
      "million monthly active users.",
  },
  {
    match: /apache/i,
    obligations:
      "Keep the licence and NOTICE; no naming or user-count conditions (gpt-oss: comply with applicable law).",
  },
];

/** The obligations a teacher's licence passes on (unknown licences say so: someone must read them). */
export function obligationsOf(licence: string): Obligation {
  const rule = RULES.find((candidate) => candidate.match.test(licence));
  if (!rule) return { licence, obligations: "Unknown licence: read it before selling a student distilled from it." };
  return { licence, obligations: rule.obligations, ...(rule.notice ? { notice: rule.notice } : {}) };
}
