// Inspector: recent webhooks of a channel, one webhook's request and attempts, replay and curl.
import { useEffect, useRef, useState } from "preact/hooks";
import { attempt } from "../actions";
import type { EventDetail, EventSummary } from "../generated/engine";
import { errorMessage, ipc } from "../ipc";
import { base64ToText, textToBase64 } from "../lib/base64";
import { buildCurl } from "../lib/curl";
import { formatBytes, formatMs, formatTime, formatTimeShort, statusClass } from "../lib/format";
import { OUTCOME_INFO } from "../lib/states";
import { validateHttpUrl } from "../lib/validate";
import { channelViews, store, useStore } from "../store";
import { Badge, BodyView, ChannelPicker, CopyButton, Empty, HeadersTable } from "./ui";

const LIST_REFRESH_MS = 2000;

export function Inspector(props: { channelKey: string | null; messageId: string | null }) {
  const state = useStore((s) => s);
  const channels = channelViews(state);
  const key = props.channelKey ?? channels[0]?.key ?? null;
  const [events, setEvents] = useState<EventSummary[] | null>(null);
  const [listError, setListError] = useState<string | null>(null);

  useEffect(() => {
    if (!key) return;
    let alive = true;
    setEvents(null);
    const load = async () => {
      try {
        const list = await ipc.listEvents(key);
        if (alive) {
          setEvents(list);
          setListError(null);
        }
      } catch (e) {
        if (alive) setListError(errorMessage(e));
      }
    };
    void load();
    const t = setInterval(() => void load(), LIST_REFRESH_MS);
    return () => {
      alive = false;
      clearInterval(t);
    };
  }, [key]);

  const select = (messageId: string | null) =>
    store.dispatch({ type: "navigate", view: { name: "inspector", key, messageId } });

  if (!key) {
    return (
      <section class="view">
        <header class="view-head"><h1>Inspector</h1></header>
        <Empty title="No channels">Add a channel first.</Empty>
      </section>
    );
  }
  const name = channels.find((c) => c.key === key)?.settings?.channel ?? key;

  return (
    <section class="view wide" aria-labelledby="inspector-title">
      <header class="view-head">
        <h1 id="inspector-title">Inspector</h1>
        <ChannelPicker channels={channels} value={key} onChange={(k) => store.dispatch({ type: "navigate", view: { name: "inspector", key: k, messageId: null } })} />
      </header>
      {listError && <p class="alert bad" data-testid="error-inline">Could not load the webhooks: {listError}</p>}
      <div class={`split ${props.messageId ? "has-detail" : ""}`}>
        <div class="pane list-pane">
          <h2 class="pane-title">Recent webhooks on {name}</h2>
          {events === null && !listError && <p class="muted">Loading…</p>}
          {events !== null && events.length === 0 && (
            <Empty title="No webhooks yet" testid="no-events">
              <p>Webhooks received on this channel appear here (kept in memory only).</p>
            </Empty>
          )}
          {events !== null && events.length > 0 && (
            <EventTable events={events} selected={props.messageId} onSelect={select} />
          )}
        </div>
        {props.messageId && (
          <div class="pane detail-pane">
            <EventDetailView key={props.messageId} channelKey={key} messageId={props.messageId} onClose={() => select(null)} onOpen={select} />
          </div>
        )}
      </div>
    </section>
  );
}

function OutcomeBadge(props: { outcome: EventSummary["outcome"]; testid?: string }) {
  const info = OUTCOME_INFO[props.outcome];
  return <Badge tone={info.tone} testid={props.testid}>{info.label}</Badge>;
}

function StatusCode(props: { status: number | null }) {
  return <span class={`code-status s-${statusClass(props.status)}`}>{props.status ?? "—"}</span>;
}

function EventTable(props: { events: EventSummary[]; selected: string | null; onSelect: (id: string) => void }) {
  return (
    <div class="table-wrap">
      <table class="list" data-testid="event-list">
        <thead>
          <tr>
            <th scope="col" class="col-time">Time</th>
            <th scope="col">Webhook</th>
            <th scope="col" class="num col-status">Status</th>
            <th scope="col" class="num col-dur">Duration</th>
            <th scope="col" class="col-outcome">Outcome</th>
          </tr>
        </thead>
        <tbody>
          {props.events.map((e) => (
            <tr
              key={e.message_id}
              class={props.selected === e.message_id ? "selected" : ""}
              data-testid={`event-row-${e.message_id}`}
              tabIndex={0}
              aria-selected={props.selected === e.message_id}
              onClick={() => props.onSelect(e.message_id)}
              onKeyDown={(ev) => {
                if (ev.key === "Enter" || ev.key === " ") {
                  ev.preventDefault();
                  props.onSelect(e.message_id);
                }
              }}
            >
              <td class="nowrap">{formatTimeShort(e.received_at)}</td>
              <td class="stack" title={`${e.webhook_id}: ${e.method ?? ""} ${e.path ?? ""}`}>
                <span class="line1">
                  {e.replay_of && <span class="replay-mark" title={`Replay of ${e.replay_of}`}>↻ </span>}
                  {e.webhook_id}
                </span>
                <span class="line2">
                  <span class="method">{e.method ?? "—"}</span> {e.path ?? ""}
                </span>
              </td>
              <td class="num"><StatusCode status={e.response_status} /></td>
              <td class="num nowrap dur">{formatMs(e.duration_ms)}</td>
              <td><OutcomeBadge outcome={e.outcome} /></td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function EventDetailView(props: { channelKey: string; messageId: string; onClose: () => void; onOpen: (id: string) => void }) {
  const [detail, setDetail] = useState<EventDetail | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let alive = true;
    ipc.getEvent(props.channelKey, props.messageId).then(
      (d) => alive && setDetail(d),
      (e: unknown) => alive && setError(errorMessage(e)),
    );
    return () => {
      alive = false;
    };
  }, [props.channelKey, props.messageId]);

  if (error) return <p class="alert bad" data-testid="error-inline">Could not load the webhook: {error}</p>;
  if (!detail) return <p class="muted">Loading…</p>;
  const { summary: s, request: r } = detail;
  const fullPath = `${r.path ?? ""}${r.query ? `?${r.query}` : ""}`;
  return (
    <article class="detail" data-testid="event-detail" aria-label={`Webhook ${s.message_id}`}>
      <header class="detail-head">
        <div>
          <h2>
            <span class="method">{r.method ?? "—"}</span> <span class="path">{fullPath || "/"}</span>
          </h2>
          <p class="muted small">
            {s.webhook_id} · {formatTime(s.received_at)} · id <code>{s.message_id}</code>
            {s.replay_of && (
              <>
                {" · replay of "}
                <button type="button" class="link" onClick={() => props.onOpen(s.replay_of ?? "")}>{s.replay_of}</button>
              </>
            )}
          </p>
        </div>
        <div class="detail-head-right">
          <OutcomeBadge outcome={s.outcome} testid="detail-outcome" />
          <button type="button" class="btn ghost icon" aria-label="Close detail" onClick={props.onClose} data-testid="close-detail">✕</button>
        </div>
      </header>

      <section class="block">
        <h3>Request as received</h3>
        <p class="muted small">
          {r.content_type ?? "no content type"} · {formatBytes(r.body_len)}
        </p>
        <HeadersTable headers={r.headers} testid="request-headers" />
        <h4>Body</h4>
        <BodyView text={r.body_text} base64={r.body_base64} len={r.body_len} truncated={r.body_truncated} contentType={r.content_type} testid="request-body" />
      </section>

      <section class="block">
        <h3>Delivery attempts ({detail.attempts.length})</h3>
        {detail.attempts.length === 0 && <p class="muted">Not delivered yet.</p>}
        <ol class="attempts">
          {detail.attempts.map((a, i) => (
            <li key={i} class="attempt" data-testid={`attempt-${i}`}>
              <div class="attempt-head">
                <span class="muted">#{i + 1}</span>
                <StatusCode status={a.status} />
                <span class="muted nowrap">{formatTime(a.at)} · {formatMs(a.duration_ms)}</span>
              </div>
              <code class="attempt-url">{a.target_url}</code>
              {a.error && <p class="alert bad small">{a.error}</p>}
              {(a.response_headers.length > 0 || a.response_body_excerpt) && (
                <details>
                  <summary>Response</summary>
                  <HeadersTable headers={a.response_headers} />
                  {a.response_body_excerpt && <pre class="code">{a.response_body_excerpt}</pre>}
                </details>
              )}
            </li>
          ))}
        </ol>
      </section>

      <ReplayPanel detail={detail} channelKey={props.channelKey} onOpen={props.onOpen} />
    </article>
  );
}

/** Original target of an event: where it went last, or null when it never went anywhere. */
function originalTarget(d: EventDetail): string {
  return d.summary.target_url ?? d.attempts[d.attempts.length - 1]?.target_url ?? "";
}

function ReplayPanel(props: { detail: EventDetail; channelKey: string; onOpen: (id: string) => void }) {
  const d = props.detail;
  const original = originalTarget(d);
  const origText = d.request.body_text ?? (d.request.body_base64 ? base64ToText(d.request.body_base64) : "");
  const editableBody = origText !== null && !d.request.body_truncated;
  const [target, setTarget] = useState(original);
  const [editing, setEditing] = useState(false);
  const [headers, setHeaders] = useState<[string, string][]>(() => d.request.headers.map(([k, v]) => [k, v]));
  const [body, setBody] = useState(origText ?? "");
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<EventDetail | null>(null);
  const resultRef = useRef<HTMLDivElement>(null);
  // The result appears under the Replay button, often below the fold: bring it into view.
  useEffect(() => {
    if (result) resultRef.current?.scrollIntoView({ block: "nearest" });
  }, [result]);
  const [targetError, setTargetError] = useState<string | null>(null);

  const headersChanged = editing && JSON.stringify(headers) !== JSON.stringify(d.request.headers);
  const bodyChanged = editing && editableBody && body !== origText;

  const curl = buildCurl({
    method: d.request.method,
    url: target.trim() || original || "http://localhost/",
    headers: editing ? headers.filter(([k]) => k.trim() !== "") : d.request.headers,
    bodyText: editableBody ? (editing ? body : origText) : null,
    bodyBase64: d.request.body_base64,
  });

  const replay = async () => {
    const err = validateHttpUrl(target, "Target URL");
    setTargetError(err);
    if (err) return;
    setBusy(true);
    const r = await attempt(
      ipc.replayEvent({
        key: props.channelKey,
        message_id: d.summary.message_id,
        target_url: target.trim() === original ? null : target.trim(),
        headers: headersChanged ? headers.filter(([k]) => k.trim() !== "") : null,
        body_base64: bodyChanged ? textToBase64(body) : null,
      }),
    );
    setBusy(false);
    if (r.ok) setResult(r.value);
  };

  return (
    <section class="block replay" aria-labelledby="replay-title">
      <h3 id="replay-title">Replay</h3>
      <label class="field">
        <span>Target URL</span>
        <input type="url" value={target} onInput={(e) => setTarget(e.currentTarget.value)} data-testid="replay-target" spellcheck={false} aria-invalid={targetError ? "true" : undefined} placeholder="http://localhost:3000/hook" />
        {targetError && <span class="field-error" role="alert">{targetError}</span>}
      </label>
      {editing && (
        <div class="replay-edit" data-testid="replay-editor">
          <div class="targets-head">
            <span>Headers</span>
            <button type="button" class="btn small" onClick={() => setHeaders([...headers, ["", ""]])} data-testid="replay-add-header">+ Header</button>
          </div>
          {headers.map(([k, v], i) => (
            <div class="target-row" key={i}>
              <input type="text" aria-label={`Header name ${i + 1}`} value={k} onInput={(e) => setHeaders(headers.map((h, j) => (j === i ? [e.currentTarget.value, h[1]] : h)))} data-testid={`replay-header-name-${i}`} spellcheck={false} />
              <input type="text" class="grow" aria-label={`Header value ${i + 1}`} value={v} onInput={(e) => setHeaders(headers.map((h, j) => (j === i ? [h[0], e.currentTarget.value] : h)))} data-testid={`replay-header-value-${i}`} spellcheck={false} />
              <button type="button" class="btn ghost icon" aria-label={`Remove header ${k || i + 1}`} onClick={() => setHeaders(headers.filter((_, j) => j !== i))}>✕</button>
            </div>
          ))}
          <label class="field">
            <span>Body</span>
            {editableBody ? (
              <textarea rows={8} value={body} onInput={(e) => setBody(e.currentTarget.value)} data-testid="replay-body" spellcheck={false} />
            ) : (
              <p class="note">{d.request.body_truncated ? "The stored body is truncated" : "The body is binary"}; it is replayed unchanged.</p>
            )}
          </label>
        </div>
      )}
      <div class="actions">
        <button type="button" class="btn primary" onClick={replay} disabled={busy} data-testid="replay">
          {busy ? "Replaying…" : editing ? "Replay edited" : "Replay"}
        </button>
        <button type="button" class="btn" aria-pressed={editing} onClick={() => {
            if (editing) {
              setHeaders(d.request.headers.map(([k, v]) => [k, v]));
              setBody(origText ?? "");
            }
            setEditing(!editing);
          }}
          data-testid="edit-replay">
          {editing ? "Discard edits" : "Edit before replay"}
        </button>
        <CopyButton text={curl} label="Copy as curl" what="curl command" testid="copy-curl" class="btn" />
      </div>
      {result && (
        <div ref={resultRef} class={`replay-result tone-${OUTCOME_INFO[result.summary.outcome].tone}`} data-testid="replay-result" role="status">
          <OutcomeBadge outcome={result.summary.outcome} />
          <StatusCode status={result.summary.response_status} />
          <span>{formatMs(result.summary.duration_ms)}</span>
          <code class="clip" title={result.summary.target_url ?? ""}>{result.summary.target_url}</code>
          {result.attempts[result.attempts.length - 1]?.error && <span class="bad-text">{result.attempts[result.attempts.length - 1]?.error}</span>}
          <button type="button" class="link" onClick={() => props.onOpen(result.summary.message_id)} data-testid="open-replay">
            Open replay
          </button>
        </div>
      )}
    </section>
  );
}
