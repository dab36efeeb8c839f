// Settings → Accounts (HOSTED.md §5): sign in to a cloud with an API key, or create an account on
// an `open` cloud. The key goes to the backend once, into the OS keyring; the UI never sees it again.
import { useState } from "preact/hooks";
import { attempt } from "../actions";
import type { AccountView } from "../generated/app";
import { errorCode, errorMessage, ipc } from "../ipc";
import { validateAccountName, validateApiKey, validateHttpUrl } from "../lib/validate";
import { store, useStore } from "../store";
import { confirmDialog } from "./Confirm";

type Mode = "sign-in" | "create";

/** What a failed sign-in or sign-up means to the user, by the backend's error code. */
export function accountErrorText(e: unknown, mode: Mode): string {
  switch (errorCode(e)) {
    case "api_key_rejected":
      return "The cloud refused this API key: it is unknown or revoked, or the account is disabled.";
    case "forbidden":
      return mode === "create"
        ? "This cloud does not allow sign-up: ask its operator for an API key and sign in with it."
        : errorMessage(e);
    case "not_found":
      return "This cloud has no self-service API (self-service is off there). Check the URL, or add a channel with its token instead.";
    case "name_taken":
      return "That account name is taken on this cloud: pick another, or leave it empty.";
    case "rate_limited":
      return "Too many sign-ups from this address: try again later.";
    case "capacity":
      return "This cloud takes no new accounts right now.";
    case "network":
      return `The cloud could not be reached: ${errorMessage(e)}`;
    default:
      return errorMessage(e);
  }
}

export function Accounts() {
  const accounts = useStore((s) => s.accounts);
  const [mode, setMode] = useState<Mode>("sign-in");
  const [cloud, setCloud] = useState("");
  const [key, setKey] = useState("");
  const [name, setName] = useState("");
  const [touched, setTouched] = useState(false);
  const [busy, setBusy] = useState(false);
  const [failure, setFailure] = useState<string | null>(null);

  const errors: Record<string, string> = {};
  const cloudErr = validateHttpUrl(cloud, "Cloud URL");
  if (cloudErr) errors.cloud = cloudErr;
  const keyErr = mode === "sign-in" ? validateApiKey(key) : null;
  if (keyErr) errors.key = keyErr;
  const nameErr = mode === "create" ? validateAccountName(name.trim()) : null;
  if (nameErr) errors.name = nameErr;
  const shown = (f: string) => (touched ? errors[f] : undefined);

  // The channels follow too: signing in or out gives or takes their credential.
  const reload = async () => {
    const r = await attempt(ipc.listAccounts());
    if (r.ok) store.dispatch({ type: "accounts", accounts: r.value });
    const c = await attempt(ipc.listChannels());
    if (c.ok) store.dispatch({ type: "channels", channels: c.value });
  };

  const submit = async (e: Event) => {
    e.preventDefault();
    setTouched(true);
    setFailure(null);
    if (Object.keys(errors).length > 0) return;
    setBusy(true);
    const cloud_url = cloud.trim().replace(/\/+$/, "");
    try {
      const a =
        mode === "sign-in"
          ? await ipc.signIn({ cloud_url, api_key: key.trim() })
          : await ipc.createAccount({ cloud_url, name: name.trim() === "" ? null : name.trim() });
      store.dispatch({ type: "toast", kind: "notice", message: mode === "sign-in" ? `Signed in as ${a.name}.` : `Account ${a.name} created.` });
      setKey("");
      setName("");
      setCloud("");
      setTouched(false);
      await reload();
    } catch (err) {
      setFailure(accountErrorText(err, mode));
    } finally {
      setBusy(false);
    }
  };

  const signOut = async (a: AccountView) => {
    const used = (store.get().channels ?? []).filter((c) => c.self_service && c.cloud_url === a.cloud_url).length;
    const ok = await confirmDialog({
      title: `Sign out of ${a.name}?`,
      body:
        `The API key is deleted from this computer's keyring.` +
        (used > 0 ? ` ${used} channel${used === 1 ? "" : "s"} of this account stop forwarding until you sign in again; webhooks wait in the cloud.` : ""),
      confirm: "Sign out",
      danger: true,
    });
    if (!ok) return;
    const r = await attempt(ipc.signOut(a.cloud_url), `Signed out of ${a.name}.`);
    if (r.ok) await reload();
  };

  return (
    <fieldset data-testid="accounts">
      <legend>Accounts</legend>
      <p class="muted">
        Sign in to a Webhook Connect cloud to create channels in one click. The API key is kept in the OS keyring only
        (the <code>webhook-connect</code> CLI on this computer uses the same entry).
      </p>
      {accounts === null && <p class="muted">Loading…</p>}
      {accounts !== null && accounts.length > 0 && (
        <ul class="accounts" data-testid="account-list">
          {accounts.map((a) => (
            <li key={a.cloud_url} class="account" data-testid={`account-${a.name}`}>
              <div class="account-main">
                <strong>{a.name}</strong>
                <span class="muted small">{a.cloud_url}</span>
              </div>
              {a.has_key ? (
                <span class="badge tone-ok">Signed in</span>
              ) : (
                <span class="badge tone-warn" title="The key is no longer in the keyring: sign in again.">Key missing</span>
              )}
              <button type="button" class="btn small" onClick={() => store.dispatch({ type: "navigate", view: { name: "new-channel" } })} disabled={!a.has_key}>
                New channel
              </button>
              <button type="button" class="btn small ghost danger" onClick={() => void signOut(a)} data-testid={`sign-out-${a.name}`}>
                Sign out
              </button>
            </li>
          ))}
        </ul>
      )}
      <form class="form account-form" onSubmit={submit} noValidate data-testid="account-form">
        <div class="seg" role="tablist" aria-label="How to sign in">
          <button type="button" role="tab" aria-selected={mode === "sign-in"} class={`tab ${mode === "sign-in" ? "active" : ""}`} onClick={() => { setMode("sign-in"); setFailure(null); }} data-testid="mode-sign-in">
            I have an API key
          </button>
          <button type="button" role="tab" aria-selected={mode === "create"} class={`tab ${mode === "create" ? "active" : ""}`} onClick={() => { setMode("create"); setFailure(null); }} data-testid="mode-create">
            Create an account
          </button>
        </div>
        <label class="field">
          <span>Cloud URL</span>
          <input type="url" value={cloud} placeholder="https://hooks.example.com" onInput={(e) => setCloud(e.currentTarget.value)} data-testid="account-cloud-url" autoComplete="off" spellcheck={false} aria-invalid={shown("cloud") ? "true" : undefined} />
          {shown("cloud") && <span class="field-error" role="alert" data-testid="field-error-account-cloud-url">{shown("cloud")}</span>}
        </label>
        {mode === "sign-in" ? (
          <label class="field">
            <span>API key <em class="muted">(empty after <code>webhook-connect login</code>)</em></span>
            <input type="password" value={key} placeholder="whc_…" onInput={(e) => setKey(e.currentTarget.value)} data-testid="account-api-key" autoComplete="off" aria-invalid={shown("key") ? "true" : undefined} />
            <small class="hint">From your cloud's operator. Empty: the key <code>webhook-connect login</code> stored on this computer.</small>
            {shown("key") && <span class="field-error" role="alert" data-testid="field-error-account-api-key">{shown("key")}</span>}
          </label>
        ) : (
          <label class="field">
            <span>Account name <em class="muted">(optional)</em></span>
            <input type="text" value={name} placeholder="alice" onInput={(e) => setName(e.currentTarget.value)} data-testid="account-name" autoComplete="off" spellcheck={false} aria-invalid={shown("name") ? "true" : undefined} />
            <small class="hint">Your channels are named <code>{name.trim() || "<account>"}.&lt;channel&gt;</code>. Only clouds open to sign-up accept this.</small>
            {shown("name") && <span class="field-error" role="alert" data-testid="field-error-account-name">{shown("name")}</span>}
          </label>
        )}
        {failure && <p class="alert bad" role="alert" data-testid="account-error">{failure}</p>}
        <div class="actions end">
          <button type="submit" class="btn primary" disabled={busy} data-testid="account-submit">
            {busy ? "Checking…" : mode === "sign-in" ? "Sign in" : "Create account"}
          </button>
        </div>
      </form>
    </fieldset>
  );
}
