// Channels overview: one card per channel with state, counters, latency and a 10-minute chart.
import { attempt } from "../actions";
import { ipc } from "../ipc";
import { perMinute } from "../lib/chart";
import { formatAgo, formatCount, formatMs, hostOf } from "../lib/format";
import { TRANSPORT_LABEL } from "../lib/states";
import { channelViews, store, useStore, type ChannelView } from "../store";
import { SeriesChart } from "./Chart";
import { confirmChoice } from "./Confirm";
import { RemoteChannels } from "./RemoteChannels";
import { CopyButton, Empty, StateBadge } from "./ui";

export function Overview(props: { refresh: () => void }) {
  const views = useStore((s) => s);
  const channels = channelViews(views);
  const loading = views.channels === null && views.snapshot === null;
  return (
    <section aria-labelledby="overview-title" class="view">
      <header class="view-head">
        <h1 id="overview-title">Channels</h1>
        <div class="actions">
          <button type="button" class="btn" data-testid="add-channel" onClick={() => store.dispatch({ type: "navigate", view: { name: "channel-form", key: null } })}>
            Add with a token
          </button>
          <button type="button" class="btn primary" data-testid="new-channel" onClick={() => store.dispatch({ type: "navigate", view: { name: "new-channel" } })}>
            + New channel
          </button>
        </div>
      </header>
      {loading && <p class="muted">Loading…</p>}
      {!loading && channels.length === 0 && (
        <Empty title="No channels yet" testid="no-channels">
          <p>
            <strong>New channel</strong> creates one on a cloud you are signed in to and gives you its URL. A channel an operator set
            up for you is added with its cloud URL and token.
          </p>
        </Empty>
      )}
      <div class="cards">
        {channels.map((c) => (
          <ChannelCard key={c.key} view={c} refresh={props.refresh} />
        ))}
      </div>
      {(views.accounts ?? [])
        .filter((a) => a.has_key)
        .map((a) => (
          <RemoteChannels key={a.cloud_url} account={a} localCount={views.channels?.length ?? 0} refresh={props.refresh} />
        ))}
    </section>
  );
}

function Stat(props: { label: string; value: string; tone?: string; testid?: string; title?: string }) {
  return (
    <div class={`stat ${props.tone ? `tone-${props.tone}` : ""}`} title={props.title}>
      <dt>{props.label}</dt>
      <dd data-testid={props.testid}>{props.value}</dd>
    </div>
  );
}

function ChannelCard(props: { view: ChannelView; refresh: () => void }) {
  const { key, settings, status } = props.view;
  const name = settings?.channel ?? status?.channel ?? key;
  const enabled = settings?.enabled ?? true;
  const c = status?.counters;
  const q = status?.queue;
  const nav = (view: Parameters<typeof store.dispatch>[0]) => store.dispatch(view);

  const toggle = async () => {
    const r = await attempt(ipc.setChannelEnabled(key, !enabled), enabled ? `Disconnected ${name}.` : `Connecting ${name}…`);
    if (r.ok) {
      const list = await attempt(ipc.listChannels());
      if (list.ok) store.dispatch({ type: "channels", channels: list.value });
      props.refresh();
    }
  };
  const remove = async () => {
    const selfService = settings?.self_service ?? false;
    const choice = await confirmChoice({
      title: `Remove channel ${name}?`,
      body: selfService
        ? "It stops forwarding to this computer. Unless you delete it at the cloud too, it keeps its URL and keeps queueing webhooks, and you can use it here again later."
        : "Its settings and stored tokens are deleted from this computer. Messages stay queued in the cloud.",
      confirm: "Remove",
      danger: true,
      ...(selfService
        ? { check: { label: "Also delete it at the cloud", help: "Its URL stops taking webhooks at once and the webhooks queued there are discarded." } }
        : {}),
    });
    if (!choice.ok) return;
    const r = await attempt(ipc.removeChannel(key, choice.checked), choice.checked ? `Deleted ${name} here and at the cloud.` : `Removed ${name}.`);
    if (r.ok) store.dispatch({ type: "channel-removed", key });
  };

  return (
    <article class="card" data-testid={`channel-row-${key}`} aria-label={`Channel ${name}`}>
      <div class="card-head">
        <div class="card-title">
          <h2>{name}</h2>
          <span class="muted small">
            {settings ? hostOf(settings.cloud_url) : ""}
            {settings?.self_service && <span class="tag account-tag" data-testid={`self-service-${key}`} title="Created with your account: it uses your API key, no channel token.">your account</span>}
          </span>
        </div>
        <div class="card-state">
          {status?.transport && <span class="tag" data-testid={`transport-${key}`}>{TRANSPORT_LABEL[status.transport]}</span>}
          <StateBadge state={status?.state ?? null} testid={`state-${key}`} />
        </div>
      </div>

      {status?.last_error && (status.state !== "connected") && (
        <p class={`alert ${status.state === "auth_failed" ? "bad" : "warn"}`} data-testid={`last-error-${key}`}>
          {status.last_error}
          {status.connection_attempts > 1 ? ` (attempt ${status.connection_attempts})` : ""}
        </p>
      )}

      {settings?.webhook_url && (
        <div class="url-row">
          <code class="url" title={settings.webhook_url} data-testid={`webhook-url-${key}`}>{settings.webhook_url}</code>
          <CopyButton text={settings.webhook_url} label="Copy URL" what="Webhook URL" testid={`copy-url-${key}`} />
        </div>
      )}

      <div class="card-body">
        <dl class="stats">
          <Stat label="Delivered" value={c ? formatCount(c.delivered) : "—"} tone="ok" testid={`delivered-${key}`} />
          <Stat label="Failed" value={c ? formatCount(c.failed) : "—"} tone={c && c.failed > 0 ? "bad" : undefined} testid={`failed-${key}`} />
          <Stat label="Retried" value={c ? formatCount(c.retried) : "—"} tone={c && c.retried > 0 ? "warn" : undefined} />
          <Stat label="Dead-lettered" value={c ? formatCount(c.dead_lettered) : "—"} tone={c && c.dead_lettered > 0 ? "bad" : undefined} />
          <Stat label="p50" value={formatMs(status?.latency.p50_ms)} />
          <Stat label="p99" value={formatMs(status?.latency.p99_ms)} />
          <Stat
            label="Cloud queue"
            value={q ? formatCount(q.pending) : "—"}
            testid={`queue-${key}`}
            title={q ? `${q.pending} pending, ${q.in_flight} in flight, ${q.delayed} delayed, ${q.dead_letters} dead letters` : "Queue depth needs the admin token."}
          />
          <Stat label="Throughput" value={status ? `${perMinute(status.series)}/min` : "—"} />
        </dl>
        <SeriesChart series={status?.series ?? []} testid={`chart-${key}`} />
      </div>

      <div class="card-foot">
        <span class="muted small">
          Last webhook {formatAgo(status?.last_event_at)}
          {q && q.dead_letters > 0 ? ` · ${q.dead_letters} dead letters in the cloud` : ""}
        </span>
        <div class="actions">
          <button
            type="button"
            class={`btn ${enabled ? "" : "primary"}`}
            data-testid={`toggle-${key}`}
            aria-pressed={enabled}
            onClick={toggle}
            disabled={!settings}
          >
            {enabled ? "Disconnect" : "Connect"}
          </button>
          <button type="button" class="btn" data-testid={`open-inspector-${key}`} onClick={() => nav({ type: "navigate", view: { name: "inspector", key, messageId: null } })}>
            Inspector
          </button>
          <button type="button" class="btn" data-testid={`dead-letters-${key}`} onClick={() => nav({ type: "navigate", view: { name: "dead-letters", key } })}>
            Dead letters
          </button>
          <button type="button" class="btn" data-testid={`edit-channel-${key}`} onClick={() => nav({ type: "navigate", view: { name: "channel-form", key } })} disabled={!settings}>
            Edit
          </button>
          <button type="button" class="btn ghost danger" data-testid={`remove-channel-${key}`} onClick={remove} aria-label={`Remove channel ${name}`} disabled={!settings}>
            Remove
          </button>
        </div>
      </div>
    </article>
  );
}
