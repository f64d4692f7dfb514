/**
 * Whether `text` is the start of some valid JSON value: what a grammar-constrained answer cut at `max_tokens`
 * must be. Closes open strings, literals, numbers and containers and asks JSON.parse.
 */
export function isJsonPrefix(text: string): boolean {
  const closers: string[] = [];
  let inString = false;
  let escaped = false;
  for (const char of text) {
    if (inString) {
      if (escaped) escaped = false;
      else if (char === "\\") escaped = true;
      else if (char === '"') inString = false;
    } else if (char === '"') inString = true;
    else if (char === "{") closers.push("}");
    else if (char === "[") closers.push("]");
    else if (char === "}" || char === "]") closers.pop();
  }
  const close = closers.reverse().join("");
  // What may be missing before the containers close: the rest of a literal, number, escape, key or value.
  const ends = ["", "e", "ue", "rue", "l", "ll", "ull", "lse", "se", "alse", "0", "1"];
  const middles = ["", ":null", '"k":null', "null", ' "k":null'];
  const starts = inString ? (escaped ? ['n"', 'u0041"'] : ['"', '0000"', '000"', '00"', '0"']) : [""];
  for (const start of starts)
    for (const end of ends)
      for (const middle of middles) {
        try {
          JSON.parse(text + start + end + middle + close);
          return true;
        } catch {
          // try the next completion
        }
      }
  return false;
}
