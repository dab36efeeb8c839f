// The signed-in account's channels that this machine does not forward yet, each with "Use here"
// (HOSTED.md §5): pick a target and the channel connects with the account's API key.
import { useEffect, useState } from "preact/hooks";
import { attempt } from "../actions";
import type { AccountView, RemoteChannel } from "../generated/app";
import { errorMessage, ipc } from "../ipc";
import { formatCount } from "../lib/format";
import { validateHttpUrl } from "../lib/validate";
import { store } from "../store";

export function RemoteChannels(props: { account: AccountView; localCount: number; refresh: () => void }) {
  const { account } = props;
  const [list, setList] = useState<RemoteChannel[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [open, setOpen] = useState<string | null>(null);

  const load = async () => {
    try {
      setList(await ipc.listRemoteChannels(account.cloud_url));
      setError(null);
    } catch (e) {
      setError(errorMessage(e));
    }
  };
  // Reloaded when this machine's channels change (one used here, or removed).
  useEffect(() => {
    void load();
  }, [account.cloud_url, props.localCount]);

  const others = (list ?? []).filter((c) => c.local_key === null);
  if (error) {
    return (
      <section class="remote" data-testid={`remote-${account.name}`}>
        <h2>More channels of {account.name}</h2>
        <p class="alert warn" data-testid="remote-error">Could not list the channels at {account.cloud_url}: {error}</p>
      </section>
    );
  }
  if (list === null || others.length === 0) return null;
  return (
    <section class="remote" data-testid={`remote-${account.name}`} aria-labelledby={`remote-title-${account.name}`}>
      <h2 id={`remote-title-${account.name}`}>More channels of {account.name}</h2>
      <p class="muted small">On {account.cloud_url}, not forwarded to this computer.</p>
      <ul class="remote-list">
        {others.map((c) => (
          <li key={c.channel} class="remote-item" data-testid={`remote-channel-${c.channel}`}>
            <div class="remote-line">
              <div class="remote-name">
                <strong>{c.channel}</strong>
                <code class="url small" title={c.webhook_url}>{c.webhook_url}</code>
              </div>
              <span class="muted small nowrap" title="Webhooks waiting at the cloud">{formatCount(c.stats.messages_queued)} queued</span>
              {open !== c.channel && (
                <button type="button" class="btn small primary" onClick={() => setOpen(c.channel)} data-testid={`use-here-${c.channel}`}>
                  Use here
                </button>
              )}
            </div>
            {open === c.channel && (
              <UseHere
                account={account}
                channel={c.channel}
                onCancel={() => setOpen(null)}
                onDone={async () => {
                  setOpen(null);
                  props.refresh();
                  await load();
                }}
              />
            )}
          </li>
        ))}
      </ul>
    </section>
  );
}

function UseHere(props: { account: AccountView; channel: string; onCancel: () => void; onDone: () => Promise<void> }) {
  const [target, setTarget] = useState("");
  const [touched, setTouched] = useState(false);
  const [busy, setBusy] = useState(false);
  const invalid = validateHttpUrl(target, "Target URL");
  const submit = async (e: Event) => {
    e.preventDefault();
    setTouched(true);
    if (invalid) return;
    setBusy(true);
    const r = await attempt(ipc.useRemoteChannel(props.account.cloud_url, props.channel, target.trim()), `${props.channel} now forwards here.`);
    setBusy(false);
    if (r.ok) {
      store.dispatch({ type: "channel-saved", channel: r.value });
      await props.onDone();
    }
  };
  return (
    <form class="use-here" onSubmit={submit} noValidate data-testid={`use-here-form-${props.channel}`}>
      <label class="field grow">
        <span>Forward to</span>
        <input type="url" value={target} placeholder="http://localhost:3000/webhook" onInput={(e) => setTarget(e.currentTarget.value)} data-testid="use-here-target" autoComplete="off" spellcheck={false} aria-invalid={touched && invalid ? "true" : undefined} />
        {touched && invalid && <span class="field-error" role="alert" data-testid="field-error-use-here-target">{invalid}</span>}
      </label>
      <div class="actions">
        <button type="button" class="btn small" onClick={props.onCancel}>Cancel</button>
        <button type="submit" class="btn small primary" disabled={busy} data-testid="use-here-submit">{busy ? "Connecting…" : "Forward here"}</button>
      </div>
    </form>
  );
}
