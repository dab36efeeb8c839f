// Shell: sidebar navigation, global pause, the current view, toasts and the confirm dialog.
import { useEffect } from "preact/hooks";
import { attempt } from "../actions";
import { ipc } from "../ipc";
import { channelViews, store, useStore, type State, type Toast, type View } from "../store";
import { ChannelForm } from "./ChannelForm";
import { ConfirmHost } from "./Confirm";
import { DeadLetters } from "./DeadLetters";
import { Inspector } from "./Inspector";
import { NewChannel } from "./NewChannel";
import { Overview } from "./Overview";
import { Settings } from "./Settings";

const NAV: { name: View["name"]; label: string; icon: string }[] = [
  { name: "overview", label: "Channels", icon: "◉" },
  { name: "inspector", label: "Inspector", icon: "☰" },
  { name: "dead-letters", label: "Dead letters", icon: "⚠" },
  { name: "settings", label: "Settings", icon: "⚙" },
];

function viewFor(name: View["name"], state: State): View {
  const cur = state.view;
  const key = "key" in cur ? cur.key : (channelViews(state)[0]?.key ?? null);
  switch (name) {
    case "inspector":
      return { name, key, messageId: null };
    case "dead-letters":
      return { name, key };
    case "channel-form":
      return { name, key: null };
    default:
      return { name };
  }
}

export function App(props: { refresh: () => void }) {
  const state = useStore((s) => s);
  const { view, snapshot } = state;
  const paused = snapshot?.paused ?? false;
  const active = view.name === "channel-form" || view.name === "new-channel" ? "overview" : view.name;

  const togglePause = async () => {
    const r = await attempt(ipc.setPaused(!paused), paused ? "Forwarding resumed." : "Forwarding paused: messages wait in the cloud.");
    if (r.ok) props.refresh();
  };

  return (
    <div class="app">
      <nav class="sidebar" aria-label="Main">
        <div class="brand">
          <span class="logo" aria-hidden="true">⇄</span>
          <span>Webhook Connect</span>
        </div>
        <ul>
          {NAV.map((n) => (
            <li key={n.name}>
              <button
                type="button"
                class={`nav-item ${active === n.name ? "active" : ""}`}
                aria-current={active === n.name ? "page" : undefined}
                data-testid={`nav-${n.name}`}
                onClick={() => store.dispatch({ type: "navigate", view: viewFor(n.name, store.get()) })}
              >
                <span class="nav-icon" aria-hidden="true">{n.icon}</span>
                {n.label}
              </button>
            </li>
          ))}
        </ul>
        <div class="sidebar-foot">
          <Toasts toasts={state.toasts} />
          <button type="button" class={`btn block ${paused ? "primary" : ""}`} onClick={togglePause} aria-pressed={paused} data-testid="pause-all" disabled={!snapshot}>
            {paused ? "▶ Resume all" : "❚❚ Pause all"}
          </button>
          <p class="muted small" data-testid="global-status">
            {!snapshot ? "Connecting to the engine…" : paused ? "Paused: nothing is forwarded." : summary(state)}
          </p>
        </div>
      </nav>
      <main class="main" id="main">
        {(snapshot?.notices ?? [])
          .filter((n) => !state.dismissedNotices.includes(n))
          .map((n) => (
            <div class="banner info" data-testid="app-notice" role="status" key={n}>
              <span>{n}</span>
              <button type="button" class="btn ghost icon" aria-label="Dismiss notice" onClick={() => store.dispatch({ type: "dismiss-notice", text: n })}>✕</button>
            </div>
          ))}
        {paused && (
          <div class="banner warn" data-testid="paused-banner" role="status">
            Forwarding is paused. Webhooks wait in the cloud until you resume.
          </div>
        )}
        {view.name === "overview" && <Overview refresh={props.refresh} />}
        {view.name === "channel-form" && <ChannelForm channelKey={view.key} refresh={props.refresh} />}
        {view.name === "new-channel" && <NewChannel refresh={props.refresh} />}
        {view.name === "inspector" && <Inspector channelKey={view.key} messageId={view.messageId} />}
        {view.name === "dead-letters" && <DeadLetters channelKey={view.key} />}
        {view.name === "settings" && <Settings />}
      </main>
      <ConfirmHost />
    </div>
  );
}

function summary(state: State): string {
  const ch = state.snapshot?.channels ?? [];
  const up = ch.filter((c) => c.state === "connected" || c.state === "degraded").length;
  return `${up} of ${ch.length} channel${ch.length === 1 ? "" : "s"} connected`;
}

/** Notices go away by themselves after this long; errors stay until dismissed. */
export const NOTICE_MS = 3000;

// The toasts live in the sidebar, above "Pause all": there they never cover a view's buttons.
function Toasts(props: { toasts: Toast[] }) {
  return (
    <div class="toasts" aria-live="polite">
      {props.toasts.map((t) => (
        <ToastItem key={t.id} toast={t} />
      ))}
    </div>
  );
}

function ToastItem(props: { toast: Toast }) {
  const t = props.toast;
  useEffect(() => {
    // Notices go away by themselves; errors stay until dismissed so they are not missed.
    if (t.kind !== "notice") return;
    const h = setTimeout(() => store.dispatch({ type: "dismiss", id: t.id }), NOTICE_MS);
    return () => clearTimeout(h);
  }, [t.id, t.kind]);
  return (
    <div class={`toast ${t.kind}`} role={t.kind === "error" ? "alert" : "status"} data-testid={t.kind === "error" ? "error" : "notice"}>
      <span>{t.message}</span>
      <button type="button" class="btn ghost icon" aria-label="Dismiss" onClick={() => store.dispatch({ type: "dismiss", id: t.id })}>✕</button>
    </div>
  );
}
