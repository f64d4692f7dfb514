/** gpt-oss reasoning effort levels (harmony's "Reasoning: …" line). */
export const REASONING_EFFORTS = ["low", "medium", "high"] as const;
export type ReasoningEffort = (typeof REASONING_EFFORTS)[number];
