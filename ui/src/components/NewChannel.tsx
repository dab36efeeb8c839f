// "New channel" on a signed-in cloud (HOSTED.md §5): name, target and an optional provider check;
// the cloud creates it, the URL is shown with Copy, and this machine forwards it at once.
import { useState } from "preact/hooks";
import type { AccountView, SavedChannel } from "../generated/app";
import type { VerifyPreset } from "../generated/protocol";
import { errorCode, errorMessage, ipc } from "../ipc";
import { validateHttpUrl, validateShortChannelName } from "../lib/validate";
import { store, useStore } from "../store";
import { CopyButton, Empty, StateBadge } from "./ui";

export const PRESETS: { value: VerifyPreset; label: string; header: string }[] = [
  { value: "github", label: "GitHub", header: "X-Hub-Signature-256" },
  { value: "stripe", label: "Stripe", header: "Stripe-Signature" },
  { value: "shopify", label: "Shopify", header: "X-Shopify-Hmac-Sha256" },
  { value: "slack", label: "Slack", header: "X-Slack-Signature" },
  { value: "standard-webhooks", label: "Standard Webhooks", header: "webhook-signature" },
  { value: "hmac-sha256", label: "HMAC-SHA256 (any provider)", header: "X-Signature" },
];

export interface NewChannelValues {
  cloud_url: string;
  name: string;
  target_url: string;
  preset: VerifyPreset | "";
  secret: string;
  header: string;
}

export function validateNewChannel(v: NewChannelValues): Record<string, string> {
  const errors: Record<string, string> = {};
  if (v.cloud_url === "") errors.cloud_url = "Sign in to a cloud first.";
  const n = validateShortChannelName(v.name.trim());
  if (n) errors.name = n;
  const t = validateHttpUrl(v.target_url, "Target URL");
  if (t) errors.target_url = t;
  if (v.preset !== "" && v.secret === "") errors.secret = "The provider's signing secret is required for the check.";
  return errors;
}

/** What a failed creation means, by the backend's error code. */
function createErrorText(e: unknown): string {
  switch (errorCode(e)) {
    case "quota_exceeded":
      return `${errorMessage(e)} Delete a channel you no longer use, or ask the operator for a larger quota.`;
    case "name_taken":
      return "Your account already has a channel with this name (or the cloud uses it): pick another name, or use the existing channel from the Channels view.";
    case "api_key_rejected":
      return "The cloud refused the stored API key: sign in again under Settings → Accounts.";
    default:
      return errorMessage(e);
  }
}

export function NewChannel(props: { refresh: () => void }) {
  const accounts = useStore((s) => s.accounts);
  const usable = (accounts ?? []).filter((a) => a.has_key);
  const [created, setCreated] = useState<SavedChannel | null>(null);
  if (accounts === null) return <section class="view"><p class="muted">Loading…</p></section>;
  if (usable.length === 0) {
    return (
      <section class="view narrow">
        <header class="view-head"><h1>New channel</h1></header>
        <Empty title="Sign in to a cloud first" testid="new-channel-sign-in">
          <p>A new channel is created on a Webhook Connect cloud you are signed in to. Sign in with an API key, or create an account on a cloud open to sign-up.</p>
          <div class="actions">
            <button type="button" class="btn primary" onClick={() => store.dispatch({ type: "navigate", view: { name: "settings" } })} data-testid="go-accounts">
              Sign in…
            </button>
            <button type="button" class="btn" onClick={() => store.dispatch({ type: "navigate", view: { name: "channel-form", key: null } })}>
              Add a channel with a token instead
            </button>
          </div>
        </Empty>
      </section>
    );
  }
  if (created) return <Created channel={created} onAnother={() => setCreated(null)} />;
  return <Form accounts={usable} refresh={props.refresh} onCreated={setCreated} />;
}

function Form(props: { accounts: AccountView[]; refresh: () => void; onCreated: (c: SavedChannel) => void }) {
  const first = props.accounts[0];
  const [v, setV] = useState<NewChannelValues>({ cloud_url: first?.cloud_url ?? "", name: "", target_url: "", preset: "", secret: "", header: "" });
  const [touched, setTouched] = useState(false);
  const [busy, setBusy] = useState(false);
  const [failure, setFailure] = useState<string | null>(null);
  const errors = validateNewChannel(v);
  const account = props.accounts.find((a) => a.cloud_url === v.cloud_url) ?? first;
  const shown = (f: string) => (touched ? errors[f] : undefined);
  const err = (f: string) => {
    const m = shown(f);
    return m ? <span class="field-error" role="alert" data-testid={`field-error-new-${f}`}>{m}</span> : null;
  };
  const update = (patch: Partial<NewChannelValues>) => setV({ ...v, ...patch });
  const preset = PRESETS.find((p) => p.value === v.preset);

  const submit = async (e: Event) => {
    e.preventDefault();
    setTouched(true);
    setFailure(null);
    if (Object.keys(errors).length > 0) return;
    setBusy(true);
    try {
      const saved = await ipc.createChannel({
        cloud_url: v.cloud_url,
        name: v.name.trim(),
        target_url: v.target_url.trim(),
        verify: v.preset === "" ? null : { preset: v.preset, secret: v.secret, ...(v.preset === "hmac-sha256" && v.header.trim() !== "" ? { header: v.header.trim() } : {}) },
      });
      store.dispatch({ type: "channel-saved", channel: saved });
      props.refresh();
      props.onCreated(saved);
    } catch (err) {
      setFailure(createErrorText(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <section class="view narrow" aria-labelledby="new-title">
      <header class="view-head"><h1 id="new-title">New channel</h1></header>
      <form class="form" onSubmit={submit} noValidate data-testid="new-channel-form">
        <fieldset>
          <legend>Channel</legend>
          {props.accounts.length > 1 && (
            <label class="field">
              <span>Account</span>
              <select value={v.cloud_url} onChange={(e) => update({ cloud_url: e.currentTarget.value })} data-testid="new-account">
                {props.accounts.map((a) => (
                  <option key={a.cloud_url} value={a.cloud_url}>{a.name} — {a.cloud_url}</option>
                ))}
              </select>
            </label>
          )}
          {props.accounts.length === 1 && account && (
            <p class="muted small" data-testid="new-account-line">On <strong>{account.cloud_url}</strong> as <strong>{account.name}</strong></p>
          )}
          <label class="field">
            <span>Name</span>
            <div class="prefixed">
              <span class="prefix" aria-hidden="true">{account?.name}.</span>
              <input type="text" value={v.name} placeholder="shop-dev" onInput={(e) => update({ name: e.currentTarget.value })} data-testid="new-name" autoComplete="off" spellcheck={false} aria-invalid={shown("name") ? "true" : undefined} />
            </div>
            <small class="hint">Lower-case letters, digits and '-'. The cloud gives the channel a webhook URL nobody can guess.</small>
            {err("name")}
          </label>
          <label class="field">
            <span>Forward to</span>
            <input type="url" value={v.target_url} placeholder="http://localhost:3000/webhook" onInput={(e) => update({ target_url: e.currentTarget.value })} data-testid="new-target" autoComplete="off" spellcheck={false} aria-invalid={shown("target_url") ? "true" : undefined} />
            <small class="hint">Your local server. Webhooks wait in the cloud while this computer is off.</small>
            {err("target_url")}
          </label>
        </fieldset>
        <fieldset>
          <legend>Provider check <em class="muted">(optional)</em></legend>
          <p class="muted small">The cloud checks each webhook's signature before keeping it: forged or altered webhooks are refused with 401 and never reach you.</p>
          <label class="field">
            <span>Provider</span>
            <select value={v.preset} onChange={(e) => update({ preset: e.currentTarget.value as NewChannelValues["preset"] })} data-testid="new-preset">
              <option value="">None: anyone with the URL may post</option>
              {PRESETS.map((p) => (
                <option key={p.value} value={p.value}>{p.label}</option>
              ))}
            </select>
          </label>
          {preset && (
            <div class="row2">
              <label class="field">
                <span>Signing secret</span>
                <input type="password" value={v.secret} onInput={(e) => update({ secret: e.currentTarget.value })} data-testid="new-secret" autoComplete="new-password" aria-invalid={shown("secret") ? "true" : undefined} />
                <small class="hint">Sent to the cloud once; it is never shown again.</small>
                {err("secret")}
              </label>
              <label class="field">
                <span>Signature header</span>
                <input type="text" value={v.preset === "hmac-sha256" ? v.header : preset.header} placeholder={preset.header} disabled={v.preset !== "hmac-sha256"} onInput={(e) => update({ header: e.currentTarget.value })} data-testid="new-header" spellcheck={false} />
              </label>
            </div>
          )}
        </fieldset>
        {failure && <p class="alert bad" role="alert" data-testid="new-channel-error">{failure}</p>}
        <div class="actions end">
          <button type="button" class="btn" onClick={() => store.dispatch({ type: "navigate", view: { name: "overview" } })} data-testid="new-cancel">Cancel</button>
          <button type="submit" class="btn primary" disabled={busy} data-testid="new-create">{busy ? "Creating…" : "Create channel"}</button>
        </div>
      </form>
    </section>
  );
}

function Created(props: { channel: SavedChannel; onAnother: () => void }) {
  const c = props.channel;
  const status = useStore((s) => s.snapshot?.channels.find((x) => x.key === c.key) ?? null);
  return (
    <section class="view narrow" aria-labelledby="created-title">
      <header class="view-head"><h1 id="created-title">{c.channel} is ready</h1></header>
      <div class="card created" data-testid="new-channel-created">
        <p>Give this URL to your provider. Webhooks sent to it are forwarded to <code>{c.default_target}</code>.</p>
        <div class="url-row big">
          <code class="url" data-testid="created-webhook-url">{c.webhook_url}</code>
          <CopyButton text={c.webhook_url} label="Copy" what="Webhook URL" testid="created-copy" class="btn primary small" />
        </div>
        <p class="created-state">
          This computer: <StateBadge state={status?.state ?? null} testid="created-state" />
        </p>
        <details>
          <summary>Try it</summary>
          <pre class="code wrap" data-testid="created-curl">{`curl -X POST ${c.webhook_url} -H 'content-type: application/json' -d '{"hello":"world"}'`}</pre>
        </details>
      </div>
      <div class="actions end">
        <button type="button" class="btn" onClick={props.onAnother} data-testid="created-another">Create another</button>
        <button type="button" class="btn primary" onClick={() => store.dispatch({ type: "navigate", view: { name: "overview" } })} data-testid="created-done">Done</button>
      </div>
    </section>
  );
}
