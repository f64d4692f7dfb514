/** One generated (or scored) token's log-prob and the most likely alternatives at its position. */
export interface TokenLogprob {
  /** Token id when the engine reports one; the text always. */
  token?: number;
  text: string;
  logprob: number;
  top: { token?: number; text: string; logprob: number }[];
}
