// App settings: notifications, autostart, start minimized (at login), history size; explains light
// mode and what closing the window does on a desktop without a tray.
import { useEffect, useState } from "preact/hooks";
import { attempt } from "../actions";
import type { AppSettings, NoTray } from "../generated/app";
import { ipc } from "../ipc";
import { store, useStore } from "../store";
import { Accounts } from "./Accounts";

/** The core's bounds (desktop/appcore `Core::save_settings`). */
export const HISTORY_MIN = 1;
export const HISTORY_MAX = 100_000;

export function validateHistorySize(n: number): string | null {
  if (!Number.isInteger(n)) return "History size must be a whole number.";
  if (n < HISTORY_MIN || n > HISTORY_MAX) return `History size must be between ${HISTORY_MIN} and ${HISTORY_MAX}.`;
  return null;
}

export function Settings() {
  const saved = useStore((s) => s.settings);
  const [v, setV] = useState<AppSettings | null>(saved);
  const [history, setHistory] = useState(saved ? String(saved.history_size) : "");
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    if (saved && v === null) {
      setV(saved);
      setHistory(String(saved.history_size));
    }
  }, [saved, v]);
  if (!v) {
    return (
      <section class="view narrow">
        <Accounts />
        <p class="muted">Loading…</p>
      </section>
    );
  }

  const historyError = validateHistorySize(Number(history));
  const dirty = saved === null || JSON.stringify({ ...v, history_size: Number(history) }) !== JSON.stringify(saved);

  const save = async (e: Event) => {
    e.preventDefault();
    if (historyError) return;
    const next = { ...v, history_size: Number(history) };
    setBusy(true);
    const r = await attempt(ipc.saveSettings(next), "Settings saved.");
    setBusy(false);
    if (r.ok) {
      const stored = r.value ?? next;
      store.dispatch({ type: "settings", settings: stored });
      setV(stored);
      setHistory(String(stored.history_size));
    }
  };

  return (
    <section class="view narrow" aria-labelledby="settings-title">
      <header class="view-head"><h1 id="settings-title">Settings</h1></header>
      <Accounts />
      <form class="form" onSubmit={save} data-testid="settings-form">
        <fieldset>
          <legend>Notifications</legend>
          {(
            [
              ["all", "All", "Connection changes, failed deliveries and dead letters."],
              ["errors", "Errors only", "Authentication failures, lost connections and dead letters."],
              ["none", "None", "Never show desktop notifications."],
            ] as const
          ).map(([value, label, help]) => (
            <label class="radio" key={value}>
              <input type="radio" name="notifications" value={value} checked={v.notifications === value} onChange={() => setV({ ...v, notifications: value })} data-testid={`notifications-${value}`} />
              <span><strong>{label}</strong> <span class="muted">— {help}</span></span>
            </label>
          ))}
        </fieldset>
        <fieldset>
          <legend>Start-up</legend>
          <label class="check">
            <input type="checkbox" checked={v.autostart} onChange={(e) => setV({ ...v, autostart: e.currentTarget.checked })} data-testid="autostart" />
            <span>Start Webhook Connect when I log in</span>
          </label>
          <label class="check">
            <input type="checkbox" checked={v.start_minimized} onChange={(e) => setV({ ...v, start_minimized: e.currentTarget.checked })} data-testid="start-minimized" />
            <span>When started at login, start minimized to the tray</span>
          </label>
          {v.light_mode !== undefined && (
            <label class="check">
              <input type="checkbox" checked={v.light_mode} onChange={(e) => setV({ ...v, light_mode: e.currentTarget.checked })} data-testid="light-mode" />
              <span>Light mode: free the window's memory when it is closed</span>
            </label>
          )}
          <div class="info" data-testid="light-mode-info">
            <p>
              <strong>With a tray, closing this window never stops forwarding:</strong> Webhook Connect keeps running in the tray.
              With light mode on, the window's memory is freed as well. Open the window again from the tray menu; use{" "}
              <em>Quit</em> there, or the button below, to stop forwarding. On a desktop without a tray, closing
              the window does what you choose under <em>Without a system tray</em>.
            </p>
            <div class="actions">
              <button type="button" class="btn small" onClick={() => void attempt(ipc.closeWindow())} data-testid="close-window">
                Close window, keep forwarding
              </button>
              <button type="button" class="btn small" onClick={() => void attempt(ipc.quitApp())} data-testid="quit-app">
                Quit Webhook Connect
              </button>
            </div>
          </div>
        </fieldset>
        {v.no_tray !== undefined && (
          <fieldset>
            <legend>Without a system tray</legend>
            <p class="muted">Some desktops (GNOME without the AppIndicator extension) show no tray icons. There, closing the window:</p>
            {(
              [
                ["keep_window", "Keeps the window", "It is minimized instead, and forwarding goes on."],
                ["quit", "Quits", "Forwarding stops until you start Webhook Connect again."],
              ] as const satisfies readonly (readonly [NoTray, string, string])[]
            ).map(([value, label, help]) => (
              <label class="radio" key={value}>
                <input type="radio" name="no_tray" value={value} checked={v.no_tray === value} onChange={() => setV({ ...v, no_tray: value })} data-testid={`no-tray-${value.replace("_", "-")}`} />
                <span><strong>{label}</strong> <span class="muted">— {help}</span></span>
              </label>
            ))}
          </fieldset>
        )}
        <fieldset>
          <legend>Inspector</legend>
          <label class="field">
            <span>History size (webhooks kept in memory for the inspector)</span>
            <input type="number" min={HISTORY_MIN} max={HISTORY_MAX} step={1} value={history} onInput={(e) => setHistory(e.currentTarget.value)} data-testid="history-size" aria-invalid={historyError ? "true" : undefined} />
            <small class="hint">Request and response bodies are kept in memory only and cleared when the app exits.</small>
            {historyError && <span class="field-error" role="alert" data-testid="field-error-history-size">{historyError}</span>}
          </label>
        </fieldset>
        <div class="actions end">
          <button type="submit" class="btn primary" disabled={busy || !!historyError || !dirty} data-testid="save-settings">
            {busy ? "Saving…" : "Save settings"}
          </button>
        </div>
      </form>
    </section>
  );
}
