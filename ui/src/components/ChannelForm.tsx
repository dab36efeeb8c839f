// Add or edit a channel. Tokens are write-only: the UI only learns whether one is stored.
import { useMemo, useState } from "preact/hooks";
import { attempt } from "../actions";
import type { SavedChannel } from "../generated/app";
import { ipc } from "../ipc";
import {
  formToInput,
  settingsToForm,
  validateChannelForm,
  type ChannelFormValues,
  type FormErrors,
} from "../lib/validate";
import { store, useStore } from "../store";

export function ChannelForm(props: { channelKey: string | null; refresh: () => void }) {
  const channels = useStore((s) => s.channels);
  const existing = useMemo(
    () => (props.channelKey ? channels?.find((c) => c.key === props.channelKey) ?? null : null),
    [channels, props.channelKey],
  );
  if (props.channelKey && channels === null) return <p class="muted">Loading…</p>;
  if (props.channelKey && !existing) {
    return (
      <section class="view">
        <p class="alert bad">This channel no longer exists.</p>
      </section>
    );
  }
  return <Form key={props.channelKey ?? "new"} existing={existing} all={channels ?? []} refresh={props.refresh} />;
}

function Form(props: { existing: SavedChannel | null; all: SavedChannel[]; refresh: () => void }) {
  const { existing } = props;
  const [v, setV] = useState<ChannelFormValues>(() => settingsToForm(existing));
  const [errors, setErrors] = useState<FormErrors>({});
  const [touched, setTouched] = useState(false);
  const [saving, setSaving] = useState(false);
  const isEdit = existing !== null;

  // A self-service channel keeps its cloud, name and credential (the account's API key).
  const locked = existing?.self_service ?? false;
  const check = (next: ChannelFormValues) =>
    validateChannelForm(next, { hasStoredToken: locked || (existing?.has_token ?? false), existing: props.all });

  const update = (patch: Partial<ChannelFormValues>) => {
    const next = { ...v, ...patch };
    setV(next);
    if (touched) setErrors(check(next));
  };
  const setRow = (i: number, patch: Partial<{ id: string; url: string }>) =>
    update({ targets: v.targets.map((r, j) => (j === i ? { ...r, ...patch } : r)) });

  const submit = async (e: Event) => {
    e.preventDefault();
    setTouched(true);
    const errs = check(v);
    setErrors(errs);
    if (Object.keys(errs).length > 0) {
      const first = document.querySelector<HTMLElement>("[aria-invalid='true']");
      first?.focus();
      return;
    }
    setSaving(true);
    const r = await attempt(ipc.saveChannel(formToInput(v)), isEdit ? "Channel saved." : "Channel added.");
    setSaving(false);
    if (r.ok) {
      store.dispatch({ type: "channel-saved", channel: r.value });
      store.dispatch({ type: "navigate", view: { name: "overview" } });
      props.refresh();
    }
  };
  const cancel = () => store.dispatch({ type: "navigate", view: { name: "overview" } });

  const err = (f: string) =>
    errors[f] ? (
      <span class="field-error" id={`err-${f.replace(/\./g, "-")}`} role="alert" data-testid={`field-error-${f.replace(/\./g, "-")}`}>
        {errors[f]}
      </span>
    ) : null;
  const aria = (f: string) => ({
    "aria-invalid": errors[f] ? ("true" as const) : undefined,
    "aria-describedby": errors[f] ? `err-${f.replace(/\./g, "-")}` : undefined,
  });

  return (
    <section class="view narrow" aria-labelledby="form-title">
      <header class="view-head">
        <h1 id="form-title">{isEdit ? `Edit ${existing.channel}` : "Add channel"}</h1>
      </header>
      <form class="form" data-testid="channel-form" onSubmit={submit} noValidate>
        <fieldset>
          <legend>Connection</legend>
          <label class="field">
            <span>Cloud URL</span>
            <input type="url" name="cloud_url" placeholder="https://relay.example.com" value={v.cloud_url} disabled={locked} onInput={(e) => update({ cloud_url: e.currentTarget.value })} data-testid="input-cloud-url" autoComplete="off" spellcheck={false} {...aria("cloud_url")} />
            {err("cloud_url")}
          </label>
          <label class="field">
            <span>Channel name</span>
            <input type="text" name="channel" placeholder="team-alpha" value={v.channel} disabled={locked} onInput={(e) => update({ channel: e.currentTarget.value })} data-testid="input-channel" autoComplete="off" spellcheck={false} {...aria("channel")} />
            <small class="hint">Letters, digits, '.', '_' and '-'; up to 128 characters.</small>
            {err("channel")}
          </label>
          {locked && (
            <p class="info" data-testid="self-service-note">
              Created with your account: it connects with the account's API key (in the OS keyring), so it needs no channel token.
            </p>
          )}
          {!locked && <div class="row2">
            <label class="field">
              <span>Channel token</span>
              <input type="password" name="token" value={v.token} onInput={(e) => update({ token: e.currentTarget.value })} placeholder={existing?.has_token ? "•••••• stored in keyring" : "required"} data-testid="input-token" autoComplete="new-password" {...aria("token")} />
              {existing?.has_token && <small class="hint" data-testid="token-stored">Stored in keyring — leave blank to keep it.</small>}
              {err("token")}
            </label>
            <label class="field">
              <span>Admin token <em class="muted">(optional)</em></span>
              <input type="password" name="admin_token" value={v.admin_token} disabled={v.remove_admin_token} onInput={(e) => update({ admin_token: e.currentTarget.value })} placeholder={existing?.has_admin_token ? "•••••• stored in keyring" : "for dead letters and queue stats"} data-testid="input-admin-token" autoComplete="new-password" />
              {existing?.has_admin_token ? (
                <>
                  <small class="hint" data-testid="admin-token-stored">Stored in keyring — leave blank to keep it.</small>
                  <label class="check small">
                    <input type="checkbox" checked={v.remove_admin_token} onChange={(e) => update({ remove_admin_token: e.currentTarget.checked, admin_token: "" })} data-testid="remove-admin-token" />
                    <span>Remove the stored admin token</span>
                  </label>
                </>
              ) : (
                <small class="hint">Needed for dead letters and the cloud queue depth.</small>
              )}
            </label>
          </div>}
          <label class="field">
            <span>Protocol</span>
            <select name="protocol" value={v.protocol} onChange={(e) => update({ protocol: e.currentTarget.value as ChannelFormValues["protocol"] })} data-testid="input-protocol">
              <option value="auto">Auto (WebSocket, then SSE, then long-poll)</option>
              <option value="websocket">WebSocket</option>
              <option value="sse">Server-sent events</option>
              <option value="long_poll">Long-poll</option>
            </select>
          </label>
        </fieldset>

        <fieldset>
          <legend>Delivery</legend>
          <label class="field">
            <span>Default target URL</span>
            <input type="url" name="default_target" placeholder="http://localhost:3000/webhook" value={v.default_target} onInput={(e) => update({ default_target: e.currentTarget.value })} data-testid="input-default-target" autoComplete="off" spellcheck={false} {...aria("default_target")} />
            <small class="hint">Used for webhook ids without their own target.</small>
            {err("default_target")}
          </label>

          <div class="targets" role="group" aria-label="Per-webhook targets">
            <div class="targets-head">
              <span>Per-webhook targets</span>
              <button type="button" class="btn small" data-testid="add-target" onClick={() => update({ targets: [...v.targets, { id: "", url: "" }] })}>
                + Add target
              </button>
            </div>
            {v.targets.length === 0 && <p class="muted small">None: every webhook goes to the default target.</p>}
            {v.targets.map((row, i) => (
              <div class="target-row" key={i} data-testid={`target-row-${i}`}>
                <label class="field">
                  <span class="sr-only">Webhook id {i + 1}</span>
                  <input type="text" placeholder="webhook id (e.g. github-main)" value={row.id} onInput={(e) => setRow(i, { id: e.currentTarget.value })} data-testid={`target-id-${i}`} spellcheck={false} {...aria(`targets.${i}.id`)} />
                  {err(`targets.${i}.id`)}
                </label>
                <label class="field grow">
                  <span class="sr-only">Target URL {i + 1}</span>
                  <input type="url" placeholder="http://localhost:4242/hook" value={row.url} onInput={(e) => setRow(i, { url: e.currentTarget.value })} data-testid={`target-url-${i}`} spellcheck={false} {...aria(`targets.${i}.url`)} />
                  {err(`targets.${i}.url`)}
                </label>
                <button type="button" class="btn ghost icon" aria-label={`Remove target ${row.id || i + 1}`} data-testid={`remove-target-${i}`} onClick={() => update({ targets: v.targets.filter((_, j) => j !== i) })}>
                  ✕
                </button>
              </div>
            ))}
          </div>
        </fieldset>

        {touched && Object.keys(errors).length > 0 && (
          <p class="alert bad" data-testid="form-errors">Please fix the {Object.keys(errors).length === 1 ? "field" : `${Object.keys(errors).length} fields`} marked above.</p>
        )}
        <div class="actions end">
          <button type="button" class="btn" onClick={cancel} data-testid="cancel-channel">
            Cancel
          </button>
          <button type="submit" class="btn primary" data-testid="save-channel" disabled={saving}>
            {saving ? "Saving…" : isEdit ? "Save" : "Add channel"}
          </button>
        </div>
      </form>
    </section>
  );
}
