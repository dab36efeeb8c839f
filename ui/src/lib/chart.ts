// Scales and SVG paths for the small throughput/latency charts.
import type { SeriesPoint } from "../generated/engine";

/** The smallest 1/2/5×10^n that is ≥ v (and ≥ `min`), so axes read as round numbers. */
export function niceMax(v: number, min = 1): number {
  const x = Math.max(v, min);
  const p = Math.pow(10, Math.floor(Math.log10(x)));
  for (const m of [1, 2, 5, 10]) {
    if (m * p >= x - 1e-9) return m * p;
  }
  return 10 * p;
}

/** Maps [0, max] to [height, 0] (SVG y grows downwards). */
export function yScale(max: number, height: number): (v: number) => number {
  return (v) => (max <= 0 ? height : height - (Math.min(Math.max(v, 0), max) / max) * height);
}

export interface Bar {
  x: number;
  width: number;
  yDelivered: number;
  hDelivered: number;
  yFailed: number;
  hFailed: number;
}

/** Stacked bars: delivered at the bottom, failed on top. */
export function bars(series: SeriesPoint[], width: number, height: number, max: number): Bar[] {
  const n = series.length;
  if (n === 0) return [];
  const slot = width / n;
  const bw = Math.max(1, slot * 0.72);
  const y = yScale(max, height);
  return series.map((p, i) => {
    const yD = y(p.delivered);
    const hD = height - yD;
    const yF = y(p.delivered + p.failed);
    return { x: i * slot + (slot - bw) / 2, width: bw, yDelivered: yD, hDelivered: hD, yFailed: yF, hFailed: yD - yF };
  });
}

/** A polyline path through the bucket centres; null values break the line. */
export function linePath(values: (number | null)[], width: number, height: number, max: number): string {
  const n = values.length;
  if (n === 0) return "";
  const slot = width / n;
  const y = yScale(max, height);
  let d = "";
  let pen = false;
  values.forEach((v, i) => {
    if (v === null || !Number.isFinite(v)) {
      pen = false;
      return;
    }
    const x = i * slot + slot / 2;
    d += `${pen ? "L" : "M"}${x.toFixed(1)},${y(v).toFixed(1)}`;
    pen = true;
  });
  return d;
}

/** Deliveries per minute over the last minute (the newest six 10 s buckets). */
export function perMinute(series: SeriesPoint[]): number {
  return series.slice(-6).reduce((s, p) => s + p.delivered + p.failed, 0);
}
