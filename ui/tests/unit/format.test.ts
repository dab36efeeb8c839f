import { describe, expect, it } from "vitest";
import { base64ToText, textToBase64 } from "../../src/lib/base64";
import {
  formatAgo,
  formatBytes,
  formatCount,
  formatMs,
  formatTime,
  formatTimeShort,
  hostOf,
  isJsonContentType,
  prettyJson,
  statusClass,
} from "../../src/lib/format";

describe("formatting", () => {
  it("formats counts compactly", () => {
    expect(formatCount(0)).toBe("0");
    expect(formatCount(999)).toBe("999");
    expect(formatCount(1000)).toBe("1k");
    expect(formatCount(1289)).toBe("1.3k");
    expect(formatCount(123_456)).toBe("123k");
    expect(formatCount(2_500_000)).toBe("2.5M");
  });
  it("formats durations", () => {
    expect(formatMs(null)).toBe("—");
    expect(formatMs(0.4)).toBe("<1 ms");
    expect(formatMs(41.6)).toBe("42 ms");
    expect(formatMs(1500)).toBe("1.5 s");
    expect(formatMs(125_000)).toBe("2 min 5 s");
  });
  it("formats sizes", () => {
    expect(formatBytes(70)).toBe("70 B");
    expect(formatBytes(2048)).toBe("2 KiB");
    expect(formatBytes(5 * 1024 * 1024)).toBe("5 MiB");
  });
  it("shows the date only for other days", () => {
    const now = new Date(2026, 10, 24, 12, 0, 0);
    expect(formatTime(new Date(2026, 10, 24, 9, 5, 7).toISOString(), now)).toBe("09:05:07");
    expect(formatTime(new Date(2026, 10, 23, 9, 5, 7).toISOString(), now)).toBe("2026-11-23 09:05:07");
    expect(formatTimeShort(new Date(2026, 10, 23, 9, 5, 7).toISOString(), now)).toBe("11-23 09:05");
    expect(formatTime(null)).toBe("—");
    expect(formatTime("garbage")).toBe("garbage");
  });
  it("says how long ago", () => {
    const now = Date.parse("2026-11-24T12:00:00Z");
    expect(formatAgo(null, now)).toBe("never");
    expect(formatAgo("2026-11-24T11:59:58Z", now)).toBe("just now");
    expect(formatAgo("2026-11-24T11:59:30Z", now)).toBe("30 s ago");
    expect(formatAgo("2026-11-24T11:55:00Z", now)).toBe("5 min ago");
    expect(formatAgo("2026-11-24T09:00:00Z", now)).toBe("3 h ago");
    expect(formatAgo("2026-11-21T12:00:00Z", now)).toBe("3 d ago");
  });
  it("pretty-prints JSON bodies and leaves the rest", () => {
    expect(prettyJson('{"a":[1,2]}')).toBe('{\n  "a": [\n    1,\n    2\n  ]\n}');
    expect(prettyJson("a=1&b=2")).toBeNull();
    expect(prettyJson("{broken")).toBeNull();
    expect(prettyJson("42")).toBeNull();
    expect(isJsonContentType("application/json; charset=utf-8")).toBe(true);
    expect(isJsonContentType("application/vnd.github+json")).toBe(true);
    expect(isJsonContentType("text/plain")).toBe(false);
    expect(isJsonContentType(null)).toBe(false);
  });
  it("classes statuses like the connector's ack table", () => {
    expect(statusClass(204)).toBe("ok");
    expect(statusClass(404)).toBe("warn");
    expect(statusClass(429)).toBe("bad");
    expect(statusClass(503)).toBe("bad");
    expect(statusClass(null)).toBe("none");
  });
  it("extracts hosts", () => {
    expect(hostOf("https://relay.example.com:8443/base")).toBe("relay.example.com:8443");
    expect(hostOf("nope")).toBe("nope");
  });
  it("round-trips UTF-8 through base64 and detects binary", () => {
    const s = "héllo ✓ 😀";
    expect(base64ToText(textToBase64(s))).toBe(s);
    expect(base64ToText(btoa(String.fromCharCode(0xff, 0xfe, 0x00)))).toBeNull();
  });
});
