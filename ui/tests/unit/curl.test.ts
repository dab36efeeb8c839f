import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { buildCurl, shellQuote } from "../../src/lib/curl";

/** Runs the command in bash with `curl` replaced by a function that prints its argv (and stdin). */
function argvOf(cmd: string): { args: string[]; stdin: string | null } {
  const script = `curl() { for a in "$@"; do printf '%s\\0' "$a"; done; for a in "$@"; do if [ "$a" = "@-" ]; then printf 'STDIN:'; base64 -w0; fi; done; }; ${cmd}`;
  const out = execFileSync("bash", ["-c", script], { encoding: "utf8" });
  const stdinAt = out.indexOf("STDIN:");
  const argPart = stdinAt >= 0 ? out.slice(0, stdinAt) : out;
  return { args: argPart.split("\0").slice(0, -1), stdin: stdinAt >= 0 ? out.slice(stdinAt + 6) : null };
}

describe("shellQuote", () => {
  it("leaves plain words alone", () => {
    expect(shellQuote("http://localhost:3000/a-b_c.d")).toBe("http://localhost:3000/a-b_c.d");
  });
  it("quotes empty strings, spaces and shell characters", () => {
    expect(shellQuote("")).toBe("''");
    expect(shellQuote("a b")).toBe("'a b'");
    expect(shellQuote("$HOME;`id`&|>")).toBe("'$HOME;`id`&|>'");
    expect(shellQuote("http://h/?a=1&b=2")).toBe("'http://h/?a=1&b=2'");
  });
  it("escapes single quotes by closing and reopening the quote", () => {
    expect(shellQuote("it's")).toBe(`'it'\\''s'`);
  });
  it("round-trips awkward strings through a real shell", () => {
    const nasty = ["it's \"quoted\"", "line1\nline2", "$(rm -rf /)", "tab\there", "ünïcødé ✓", "'", "\\"];
    const { args } = argvOf(`curl ${nasty.map(shellQuote).join(" ")}`);
    expect(args).toEqual(nasty);
  });
});

describe("buildCurl", () => {
  const headers: [string, string][] = [
    ["Host", "relay.example.com"],
    ["Content-Type", "application/json"],
    ["Content-Length", "17"],
    ["X-Sig", "sha256=abc'def"],
    ["Connection", "keep-alive"],
  ];

  it("builds a POST with the body via --data-binary and no hop-by-hop headers", () => {
    const cmd = buildCurl({ method: "POST", url: "http://localhost:3000/hook", headers, bodyText: '{"a":"it\'s"}', bodyBase64: "" });
    expect(cmd).toBe(
      `curl http://localhost:3000/hook -H 'Content-Type: application/json' -H 'X-Sig: sha256=abc'\\''def' --data-binary '{"a":"it'\\''s"}'`,
    );
    expect(argvOf(cmd).args).toEqual([
      "http://localhost:3000/hook", "-H", "Content-Type: application/json", "-H", "X-Sig: sha256=abc'def",
      "--data-binary", '{"a":"it\'s"}',
    ]);
  });

  it("adds -X for methods curl would not pick itself", () => {
    expect(buildCurl({ method: "PUT", url: "http://h/", headers: [["Content-Type", "text/plain"]], bodyText: "x", bodyBase64: "" })).toBe(
      "curl -X PUT http://h/ -H 'Content-Type: text/plain' --data-binary x",
    );
    expect(buildCurl({ method: "GET", url: "http://h/", headers: [], bodyText: "", bodyBase64: "" })).toBe("curl http://h/");
    expect(buildCurl({ method: "POST", url: "http://h/", headers: [], bodyText: "", bodyBase64: "" })).toBe("curl -X POST http://h/");
    expect(buildCurl({ method: "delete", url: "http://h/", headers: [], bodyText: null, bodyBase64: "" })).toBe("curl -X DELETE http://h/");
  });

  it("blanks curl's default form content type when the request had none", () => {
    const cmd = buildCurl({ method: "POST", url: "http://h/", headers: [], bodyText: "hello", bodyBase64: "" });
    expect(cmd).toBe("curl http://h/ -H Content-Type: --data-binary hello");
  });

  it("pipes binary bodies through base64 -d so every byte survives", () => {
    const bytes = Buffer.from([0, 1, 2, 255, 39, 10, 13, 128]);
    const cmd = buildCurl({ method: "POST", url: "http://h/bin", headers: [["Content-Type", "application/octet-stream"]], bodyText: null, bodyBase64: bytes.toString("base64") });
    expect(cmd.startsWith("printf '%s' ")).toBe(true);
    const { args, stdin } = argvOf(cmd);
    expect(args).toEqual(["http://h/bin", "-H", "Content-Type: application/octet-stream", "--data-binary", "@-"]);
    expect(Buffer.from(stdin ?? "", "base64")).toEqual(bytes);
  });

  it("keeps multi-line bodies intact", () => {
    const body = '{\n  "a": 1,\n  "b": "x y"\n}\n';
    const cmd = buildCurl({ method: "POST", url: "http://h/", headers: [["content-type", "application/json"]], bodyText: body, bodyBase64: "" });
    expect(argvOf(cmd).args.at(-1)).toBe(body);
  });
});
