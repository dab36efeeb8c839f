// Dead letters of a channel at the cloud (admin token, or the account's API key for a self-service
// channel): list, inspect, replay, delete, purge.
import { Fragment } from "preact";
import { useCallback, useEffect, useState } from "preact/hooks";
import { attempt } from "../actions";
import type { DeadLetterList, MessageView } from "../generated/protocol";
import { errorMessage, ipc } from "../ipc";
import { textToBase64 } from "../lib/base64";
import { formatTime, formatTimeShort } from "../lib/format";
import { channelViews, store, useStore } from "../store";
import { confirmDialog } from "./Confirm";
import { Badge, BodyView, ChannelPicker, Empty, HeadersTable } from "./ui";

const PAGE = 50;

const REASON_LABEL: Record<string, string> = {
  rejected: "Rejected by target",
  max_delivery_attempts: "Too many attempts",
  expired: "Expired",
};

export function DeadLetters(props: { channelKey: string | null }) {
  const state = useStore((s) => s);
  const channels = channelViews(state);
  const key = props.channelKey ?? channels[0]?.key ?? null;
  const settings = channels.find((c) => c.key === key)?.settings ?? null;
  const [list, setList] = useState<DeadLetterList | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [offset, setOffset] = useState(0);
  const [selected, setSelected] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  // A self-service channel's dead letters are read with the account's API key.
  const selfService = settings?.self_service ?? false;
  const canRead = (settings?.has_admin_token ?? false) || (selfService && (settings?.has_token ?? false));

  const load = useCallback(async () => {
    if (!key || !canRead) return;
    try {
      setList(await ipc.listDeadLetters(key, PAGE, offset));
      setError(null);
    } catch (e) {
      setError(errorMessage(e));
    }
  }, [key, canRead, offset]);

  useEffect(() => {
    setList(null);
    setSelected(null);
    void load();
  }, [load]);

  if (!key) {
    return (
      <section class="view">
        <header class="view-head"><h1>Dead letters</h1></header>
        <Empty title="No channels">Add a channel first.</Empty>
      </section>
    );
  }
  const name = settings?.channel ?? key;
  const current = list?.messages.find((m) => m.message_id === selected) ?? null;

  const act = async (what: "replay" | "delete", m: MessageView) => {
    if (what === "delete") {
      const ok = await confirmDialog({
        title: "Delete this dead letter?",
        body: `Message ${m.message_id} (${m.webhook_id}) is removed from the cloud for good.`,
        confirm: "Delete",
        danger: true,
      });
      if (!ok) return;
    }
    setBusy(true);
    const r =
      what === "replay"
        ? await attempt(ipc.replayDeadLetter(key, m.message_id), "Dead letter queued for delivery again.")
        : await attempt(ipc.deleteDeadLetter(key, m.message_id), "Dead letter deleted.");
    setBusy(false);
    if (r.ok) {
      setSelected(null);
      await load();
    }
  };

  const purge = async () => {
    const ok = await confirmDialog({
      title: `Purge all dead letters of ${name}?`,
      body: `${list?.total === 1 ? "1 dead letter is" : `${list?.total ?? "All"} dead letters are`} deleted from the cloud for good. This cannot be undone.`,
      confirm: "Purge all",
      danger: true,
    });
    if (!ok) return;
    setBusy(true);
    const r = await attempt(ipc.purgeDeadLetters(key));
    setBusy(false);
    if (r.ok) {
      store.dispatch({ type: "toast", kind: "notice", message: `Purged ${r.value} dead letter${r.value === 1 ? "" : "s"}.` });
      setOffset(0);
      setSelected(null);
      await load();
    }
  };

  return (
    <section class="view wide" aria-labelledby="dlq-title">
      <header class="view-head">
        <h1 id="dlq-title">Dead letters</h1>
        <ChannelPicker channels={channels} value={key} onChange={(k) => store.dispatch({ type: "navigate", view: { name: "dead-letters", key: k } })} />
      </header>
      {!canRead && selfService && (
        <div class="alert warn" data-testid="dlq-needs-sign-in">
          <p>
            <strong>Not signed in.</strong> This channel belongs to your account on {settings?.cloud_url}: sign in again to read its dead letters.
          </p>
          <button type="button" class="btn" onClick={() => store.dispatch({ type: "navigate", view: { name: "settings" } })}>
            Sign in…
          </button>
        </div>
      )}
      {!canRead && !selfService && (
        <div class="alert warn" data-testid="dlq-needs-admin">
          <p>
            <strong>Admin token needed.</strong> Dead letters live in the cloud and are read with the cloud's admin token.
            Add it to this channel to list, replay and delete them.
          </p>
          <button type="button" class="btn" onClick={() => store.dispatch({ type: "navigate", view: { name: "channel-form", key } })} data-testid="dlq-add-admin-token">
            Add admin token
          </button>
        </div>
      )}
      {canRead && (
        <>
          <div class="toolbar">
            <span class="muted" data-testid="dlq-total">
              {list ? `${list.total} dead letter${list.total === 1 ? "" : "s"} on ${name}` : "Loading…"}
            </span>
            <div class="actions">
              <button type="button" class="btn" onClick={() => void load()} data-testid="dlq-refresh">Refresh</button>
              <button type="button" class="btn danger" onClick={purge} disabled={busy || !list || list.total === 0} data-testid="dlq-purge">
                Purge all…
              </button>
            </div>
          </div>
          {error && <p class="alert bad" data-testid="error-inline">Could not load the dead letters: {error}</p>}
          {list && list.messages.length === 0 && (
            <Empty title="No dead letters" testid="dlq-empty">
              <p>Messages the targets rejected or that ran out of attempts would appear here.</p>
            </Empty>
          )}
          <div class={`split ${current ? "has-detail" : ""}`}>
            {list && list.messages.length > 0 && (
              <div class="pane list-pane">
                <div class="table-wrap">
                  <table class="list" data-testid="dlq-list">
                    <thead>
                      <tr>
                        <th scope="col" class="col-when">When</th>
                        <th scope="col">Webhook</th>
                        <th scope="col" class="col-reason">Reason</th>
                        <th scope="col" class="num col-attempts">Attempts</th>
                      </tr>
                    </thead>
                    <tbody>
                      {list.messages.map((m) => (
                        <tr
                          key={m.message_id}
                          data-testid={`dlq-row-${m.message_id}`}
                          class={selected === m.message_id ? "selected" : ""}
                          tabIndex={0}
                          aria-selected={selected === m.message_id}
                          onClick={() => setSelected(m.message_id)}
                          onKeyDown={(e) => {
                            if (e.key === "Enter" || e.key === " ") {
                              e.preventDefault();
                              setSelected(m.message_id);
                            }
                          }}
                        >
                          <td class="nowrap">{formatTimeShort(m.dead_lettered_at ?? m.last_attempt_at ?? m.timestamp)}</td>
                          <td class="stack" title={`${m.webhook_id}: ${m.method} ${m.path}`}>
                            <span class="line1">{m.webhook_id}</span>
                            <span class="line2"><span class="method">{m.method}</span> {pathWithBreaks(m.path)}</span>
                          </td>
                          <td>
                            <Badge tone={m.reason === "expired" ? "warn" : "bad"} title={m.last_error ?? undefined}>
                              {REASON_LABEL[m.reason ?? ""] ?? m.reason ?? "—"}
                            </Badge>
                          </td>
                          <td class="num">{m.delivery_count}</td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                </div>
                {list.total > PAGE && (
                  <div class="pager">
                    <button type="button" class="btn small" disabled={offset === 0} onClick={() => setOffset(Math.max(0, offset - PAGE))}>← Newer</button>
                    <span class="muted small">{offset + 1}–{offset + list.count} of {list.total}</span>
                    <button type="button" class="btn small" disabled={offset + list.count >= list.total} onClick={() => setOffset(offset + PAGE)}>Older →</button>
                  </div>
                )}
              </div>
            )}
            {current && (
              <div class="pane detail-pane">
                <DeadLetterDetail m={current} busy={busy} onReplay={() => act("replay", current)} onDelete={() => act("delete", current)} onClose={() => setSelected(null)} />
              </div>
            )}
          </div>
        </>
      )}
    </section>
  );
}

/** The cloud's view of a message body: the exact bytes when it sent them, else its JSON payload. */
function bodyOf(m: MessageView): { text: string | null; b64: string } {
  if (m.body_b64 !== undefined) return { text: null, b64: m.body_b64 };
  if (m.payload === null || m.payload === undefined) return { text: "", b64: "" };
  const text = typeof m.payload === "string" ? m.payload : JSON.stringify(m.payload);
  return { text, b64: textToBase64(text) };
}

function DeadLetterDetail(props: { m: MessageView; busy: boolean; onReplay: () => void; onDelete: () => void; onClose: () => void }) {
  const m = props.m;
  const headers: [string, string][] = m.raw_headers ?? Object.entries(m.headers);
  const body = bodyOf(m);
  return (
    <article class="detail" data-testid="dlq-detail">
      <header class="detail-head">
        <div>
          <h2><span class="method">{m.method}</span> <span class="path">{m.path}{m.query ? `?${m.query}` : ""}</span></h2>
          <p class="muted small">
            {m.webhook_id} · received {formatTime(m.timestamp)} · id <code>{m.message_id}</code>
          </p>
        </div>
        <button type="button" class="btn ghost icon" aria-label="Close detail" onClick={props.onClose}>✕</button>
      </header>
      <dl class="facts">
        <dt>Reason</dt><dd>{REASON_LABEL[m.reason ?? ""] ?? m.reason ?? "—"}</dd>
        <dt>Attempts</dt><dd>{m.delivery_count}</dd>
        <dt>Last error</dt><dd>{m.last_error ?? "—"}</dd>
        <dt>First / last attempt</dt><dd>{formatTime(m.first_attempt_at)} / {formatTime(m.last_attempt_at)}</dd>
        <dt>Dead-lettered</dt><dd>{formatTime(m.dead_lettered_at)}</dd>
      </dl>
      <div class="actions">
        <button type="button" class="btn primary" onClick={props.onReplay} disabled={props.busy} data-testid="dlq-replay">Replay</button>
        <button type="button" class="btn danger" onClick={props.onDelete} disabled={props.busy} data-testid="dlq-delete">Delete…</button>
      </div>
      <section class="block">
        <h3>Headers</h3>
        <HeadersTable headers={headers} />
        <h4>Body</h4>
        <BodyView text={body.text} base64={body.b64} len={body.text !== null ? new TextEncoder().encode(body.text).length : Math.floor((body.b64.length * 3) / 4)} contentType={m.content_type} />
      </section>
    </article>
  );
}

/** The path with line-break opportunities before each "/" but the first (a narrow column wraps
 * "/webhook/alpha" as "/webhook" + "/alpha"). */
function pathWithBreaks(path: string) {
  return path.split("/").map((seg, i) => (
    <Fragment key={i}>
      {i > 1 && <wbr />}
      {i > 0 && "/"}
      {seg}
    </Fragment>
  ));
}
