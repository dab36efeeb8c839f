// "Copy as curl": a command a POSIX shell runs byte-for-byte as the original request.

/** Quotes one argument for a POSIX shell; single quotes keep everything literal except `'`. */
export function shellQuote(s: string): string {
  if (s !== "" && /^[A-Za-z0-9_@%+=:,./-]+$/.test(s)) return s;
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Headers curl computes itself or that only make sense hop by hop. */
const SKIPPED_HEADERS = new Set([
  "host",
  "content-length",
  "connection",
  "keep-alive",
  "transfer-encoding",
  "te",
  "trailer",
  "upgrade",
  "proxy-connection",
  "proxy-authorization",
  "proxy-authenticate",
]);

export interface CurlInput {
  method: string | null;
  url: string;
  headers: [string, string][];
  /** UTF-8 text body, or null when the body is binary (then `bodyBase64` is used). */
  bodyText: string | null;
  bodyBase64: string;
}

export function buildCurl(input: CurlInput): string {
  const method = (input.method ?? "POST").toUpperCase();
  const hasBody = input.bodyText !== null ? input.bodyText.length > 0 : input.bodyBase64.length > 0;
  const parts: string[] = ["curl"];
  // --data-binary implies POST; any other method with a body, and every method other than GET
  // without one, needs -X.
  if ((hasBody && method !== "POST") || (!hasBody && method !== "GET")) parts.push("-X", shellQuote(method));
  parts.push(shellQuote(input.url));
  for (const [name, value] of input.headers) {
    if (SKIPPED_HEADERS.has(name.toLowerCase())) continue;
    parts.push("-H", shellQuote(`${name}: ${value}`));
  }
  if (hasBody && input.bodyText === null) {
    // Binary: decode the base64 in the pipeline so no byte gets mangled by the shell.
    parts.push("--data-binary", "@-");
    return `printf '%s' ${shellQuote(input.bodyBase64)} | base64 -d | ${parts.join(" ")}`;
  }
  if (hasBody && input.bodyText !== null) {
    if (!input.headers.some(([n]) => n.toLowerCase() === "content-type")) {
      // Without it curl would send application/x-www-form-urlencoded.
      parts.push("-H", shellQuote("Content-Type:"));
    }
    parts.push("--data-binary", shellQuote(input.bodyText));
  }
  return parts.join(" ");
}
