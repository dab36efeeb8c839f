// Throughput (stacked bars: delivered/failed per 10 s) and p50/p99 latency (lines) over 10 minutes.
import type { SeriesPoint } from "../generated/engine";
import { bars, linePath, niceMax } from "../lib/chart";
import { formatMs } from "../lib/format";

const W = 300;
const H = 64;

export function SeriesChart(props: { series: SeriesPoint[]; testid?: string }) {
  const s = props.series;
  const countMax = niceMax(Math.max(0, ...s.map((p) => p.delivered + p.failed)), 5);
  const latMax = niceMax(Math.max(0, ...s.map((p) => p.p99_ms ?? p.p50_ms ?? 0)), 10);
  const total = s.reduce((a, p) => a + p.delivered + p.failed, 0);
  const failed = s.reduce((a, p) => a + p.failed, 0);
  const label = `Last ${Math.round((s.length * 10) / 60)} minutes: ${total} deliveries, ${failed} failed; latency axis up to ${formatMs(latMax)}.`;
  return (
    <figure class="chart" data-testid={props.testid}>
      <svg viewBox={`0 0 ${W} ${H}`} preserveAspectRatio="none" role="img" aria-label={label}>
        <line x1="0" x2={W} y1={H / 2} y2={H / 2} class="grid" />
        <line x1="0" x2={W} y1={H - 0.5} y2={H - 0.5} class="axis" />
        {bars(s, W, H, countMax).map((b, i) => (
          <g key={i}>
            {b.hDelivered > 0 && <rect x={b.x} y={b.yDelivered} width={b.width} height={b.hDelivered} class="bar-ok" />}
            {b.hFailed > 0 && <rect x={b.x} y={b.yFailed} width={b.width} height={b.hFailed} class="bar-bad" />}
          </g>
        ))}
        <path d={linePath(s.map((p) => p.p50_ms), W, H, latMax)} class="line-p50" vector-effect="non-scaling-stroke" />
        <path d={linePath(s.map((p) => p.p99_ms), W, H, latMax)} class="line-p99" vector-effect="non-scaling-stroke" />
      </svg>
      <figcaption>
        <span><i class="key key-ok" /> delivered</span>
        <span><i class="key key-bad" /> failed</span>
        <span class="muted">per 10 s, max {countMax}</span>
        <span><i class="key key-p50" /> p50</span>
        <span><i class="key key-p99" /> p99</span>
        <span class="muted">max {formatMs(latMax)}</span>
      </figcaption>
    </figure>
  );
}
