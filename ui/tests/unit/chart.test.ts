import { describe, expect, it } from "vitest";
import type { SeriesPoint } from "../../src/generated/engine";
import { bars, linePath, niceMax, perMinute, yScale } from "../../src/lib/chart";

const pt = (delivered: number, failed: number, p50: number | null = null, p99: number | null = null): SeriesPoint => ({
  t_ms: 0, delivered, failed, p50_ms: p50, p99_ms: p99,
});

describe("chart scaling", () => {
  it("rounds axis maxima up to 1/2/5 steps", () => {
    expect(niceMax(0)).toBe(1);
    expect(niceMax(0, 5)).toBe(5);
    expect(niceMax(7)).toBe(10);
    expect(niceMax(13)).toBe(20);
    expect(niceMax(20)).toBe(20);
    expect(niceMax(187)).toBe(200);
    expect(niceMax(501)).toBe(1000);
    expect(niceMax(0.3)).toBe(1);
  });
  it("maps values to SVG y and clamps", () => {
    const y = yScale(100, 50);
    expect(y(0)).toBe(50);
    expect(y(100)).toBe(0);
    expect(y(50)).toBe(25);
    expect(y(250)).toBe(0);
    expect(y(-3)).toBe(50);
    expect(yScale(0, 50)(10)).toBe(50);
  });
  it("stacks failed on top of delivered", () => {
    const [a, b] = bars([pt(5, 0), pt(2, 3)], 100, 40, 10);
    expect(a?.hDelivered).toBe(20);
    expect(a?.hFailed).toBe(0);
    expect(b?.yDelivered).toBe(32);
    expect(b?.hDelivered).toBe(8);
    expect(b?.yFailed).toBe(20);
    expect(b?.hFailed).toBe(12);
    expect(a?.x).toBeCloseTo(7);
    expect(b?.x).toBeCloseTo(57);
    expect(bars([], 100, 40, 10)).toEqual([]);
  });
  it("breaks lines at missing latencies", () => {
    expect(linePath([10, 20, null, 5], 40, 20, 20)).toBe("M5.0,10.0L15.0,0.0M35.0,15.0");
    expect(linePath([null, null], 40, 20, 20)).toBe("");
    expect(linePath([], 40, 20, 20)).toBe("");
  });
  it("sums the last minute of deliveries", () => {
    const series = [pt(100, 100), ...Array.from({ length: 6 }, () => pt(2, 1))];
    expect(perMinute(series)).toBe(18);
  });
});
