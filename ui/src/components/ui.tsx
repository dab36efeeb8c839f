// Small shared pieces: badges, copy button, channel picker, headers table, body viewer.
import type { ComponentChildren } from "preact";
import { useState } from "preact/hooks";
import type { LinkState } from "../generated/engine";
import { base64ToText } from "../lib/base64";
import { copyText } from "../lib/clipboard";
import { formatBytes, prettyJson } from "../lib/format";
import { STATE_INFO } from "../lib/states";
import { store, toastError, toastNotice, type ChannelView } from "../store";

export function Badge(props: { tone: string; children: ComponentChildren; testid?: string; title?: string }) {
  return (
    <span class={`badge tone-${props.tone}`} data-testid={props.testid} title={props.title}>
      {props.children}
    </span>
  );
}

export function StateBadge(props: { state: LinkState | null; testid?: string }) {
  const info = props.state ? STATE_INFO[props.state] : { label: "Unknown", tone: "idle", help: "No status yet." };
  return (
    <span class={`state tone-${info.tone}`} data-testid={props.testid} data-state={props.state ?? "unknown"} title={info.help}>
      <span class="dot" aria-hidden="true" />
      {info.label}
    </span>
  );
}

export function CopyButton(props: { text: string; label: string; testid?: string; what?: string; class?: string }) {
  const [done, setDone] = useState(false);
  const onClick = async () => {
    try {
      await copyText(props.text);
      setDone(true);
      setTimeout(() => setDone(false), 1500);
      store.dispatch(toastNotice(`${props.what ?? "Text"} copied to the clipboard.`));
    } catch (e) {
      store.dispatch(toastError(e instanceof Error ? e.message : String(e)));
    }
  };
  return (
    <button type="button" class={props.class ?? "btn small"} onClick={onClick} data-testid={props.testid} aria-label={props.label}>
      {done ? "Copied" : props.label}
    </button>
  );
}

export function ChannelPicker(props: { channels: ChannelView[]; value: string | null; onChange: (key: string) => void; testid?: string }) {
  return (
    <label class="picker">
      <span>Channel</span>
      <select
        value={props.value ?? ""}
        data-testid={props.testid ?? "channel-picker"}
        onChange={(e) => props.onChange(e.currentTarget.value)}
      >
        {props.channels.map((c) => (
          <option key={c.key} value={c.key}>
            {c.settings?.channel ?? c.status?.channel ?? c.key}
          </option>
        ))}
      </select>
    </label>
  );
}

export function HeadersTable(props: { headers: [string, string][]; testid?: string; empty?: string }) {
  if (props.headers.length === 0) return <p class="muted">{props.empty ?? "No headers."}</p>;
  return (
    <table class="kv" data-testid={props.testid}>
      <tbody>
        {props.headers.map(([k, v], i) => (
          <tr key={i}>
            <th scope="row">{k}</th>
            <td>{v}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** Shows a body: pretty JSON, raw text, or a note for binary content. */
export function BodyView(props: { text: string | null; base64: string; len: number; truncated?: boolean; contentType?: string | null; testid?: string }) {
  const text = props.text ?? (props.base64 ? base64ToText(props.base64) : "");
  const [raw, setRaw] = useState(false);
  if (props.len === 0 && !text) return <p class="muted" data-testid={props.testid}>Empty body.</p>;
  if (text === null) {
    return (
      <div data-testid={props.testid}>
        <p class="note">
          Binary body ({formatBytes(props.len)}{props.contentType ? `, ${props.contentType}` : ""}). Shown as base64; it is
          forwarded and replayed byte for byte.
        </p>
        <pre class="code wrap">{props.base64}</pre>
      </div>
    );
  }
  const pretty = prettyJson(text);
  return (
    <div data-testid={props.testid}>
      {pretty !== null && (
        <div class="body-tabs" role="group" aria-label="Body format">
          <button type="button" class={`tab ${raw ? "" : "active"}`} aria-pressed={!raw} onClick={() => setRaw(false)}>
            JSON
          </button>
          <button type="button" class={`tab ${raw ? "active" : ""}`} aria-pressed={raw} onClick={() => setRaw(true)}>
            Raw
          </button>
        </div>
      )}
      <pre class="code" data-testid={props.testid ? `${props.testid}-text` : undefined}>
        {pretty !== null && !raw ? pretty : text}
      </pre>
      {props.truncated && <p class="note">Body truncated to {formatBytes(props.len)} in the history.</p>}
    </div>
  );
}

export function Empty(props: { title: string; children?: ComponentChildren; testid?: string }) {
  return (
    <div class="empty" data-testid={props.testid}>
      <h3>{props.title}</h3>
      {props.children}
    </div>
  );
}
