// Client-side checks of the channel form, with the rules of CONFIG.md §7 and PROTOCOL.md §1.4/§2.2.
import type { ChannelInput, SavedChannel } from "../generated/app";

/** PROTOCOL.md §1.4 (channel names): 1–128 characters, `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`, no `..`. */
const CHANNEL_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** PROTOCOL.md §2.2 (webhook ids, namespaces). */
const WEBHOOK_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;
const NAMESPACE_RE = /^[A-Za-z0-9_-]{1,64}$/;
const RESERVED_IDS = new Set([
  "stats", "health", "docs", "openapi.json", "redoc", "api", "admin", "root", "system", "internal",
  "favicon.ico", "robots.txt",
]);

export function validateHttpUrl(value: string, what: string): string | null {
  const v = value.trim();
  if (v === "") return `${what} is required.`;
  let url: URL;
  try {
    url = new URL(v);
  } catch {
    return `${what} is not a valid URL (e.g. http://localhost:3000/hook).`;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return `${what} must start with http:// or https://.`;
  }
  if (url.hostname === "") return `${what} needs a host name.`;
  return null;
}

export function validateChannelName(name: string): string | null {
  if (name === "") return "Channel name is required.";
  if (name.length > 128) return "Channel name is at most 128 characters.";
  if (!/^[A-Za-z0-9]/.test(name)) return "Channel name must start with a letter or digit.";
  if (!CHANNEL_RE.test(name)) return "Channel name may only contain letters, digits, '.', '_' and '-'.";
  if (name.includes("..")) return "Channel name must not contain '..'.";
  return null;
}

/** A target key is a webhook id, optionally prefixed by `<namespace>/`. */
export function validateWebhookKey(key: string): string | null {
  if (key === "") return "Webhook id is required.";
  const slash = key.indexOf("/");
  let id = key;
  if (slash >= 0) {
    const ns = key.slice(0, slash);
    id = key.slice(slash + 1);
    if (!NAMESPACE_RE.test(ns)) return "Namespace may only contain letters, digits, '_' and '-' (1–64).";
  }
  if (id.length === 0 || id.length > 64) return "Webhook id must be 1–64 characters.";
  if (!WEBHOOK_ID_RE.test(id)) return "Webhook id: letters, digits, '_' and '-', starting with a letter or digit.";
  if (id.includes("--") || id.includes("__")) return "Webhook id must not contain '--' or '__'.";
  const lower = id.toLowerCase();
  if (RESERVED_IDS.has(lower)) return `'${id}' is a reserved name.`;
  if (/^(internal_|system_|admin_)/.test(lower) || /(_internal|_system|_admin)$/.test(lower)) {
    return "Webhook id must not start with internal_/system_/admin_ or end with _internal/_system/_admin.";
  }
  return null;
}

export interface TargetRow {
  id: string;
  url: string;
}

export interface ChannelFormValues {
  key: string | null;
  cloud_url: string;
  channel: string;
  token: string;
  admin_token: string;
  protocol: ChannelInput["protocol"];
  default_target: string;
  targets: TargetRow[];
  /** Edit only: forget the stored admin token. */
  remove_admin_token: boolean;
}

/** Field name (or `targets.<i>.id` / `targets.<i>.url`, `form`) → message. Empty = valid. */
export type FormErrors = Record<string, string>;

export function validateChannelForm(
  v: ChannelFormValues,
  opts: { hasStoredToken: boolean; existing: SavedChannel[] },
): FormErrors {
  const errors: FormErrors = {};
  const put = (field: string, msg: string | null) => {
    if (msg) errors[field] = msg;
  };
  put("cloud_url", validateHttpUrl(v.cloud_url, "Cloud URL"));
  put("channel", validateChannelName(v.channel.trim()));
  if (v.token.trim() === "" && !opts.hasStoredToken) errors.token = "Channel token is required.";
  if (v.default_target.trim() !== "") put("default_target", validateHttpUrl(v.default_target, "Default target"));
  const seen = new Set<string>();
  v.targets.forEach((row, i) => {
    const id = row.id.trim();
    const idErr = validateWebhookKey(id);
    if (idErr) errors[`targets.${i}.id`] = idErr;
    else if (seen.has(id)) errors[`targets.${i}.id`] = `Webhook id '${id}' is listed twice.`;
    seen.add(id);
    put(`targets.${i}.url`, validateHttpUrl(row.url, "Target URL"));
  });
  if (v.default_target.trim() === "" && v.targets.length === 0) {
    errors.default_target = "Set a default target or add at least one per-webhook target.";
  }
  if (!errors.cloud_url && !errors.channel) {
    const origin = normalizeCloudUrl(v.cloud_url);
    const dup = opts.existing.find(
      (c) => c.key !== v.key && c.channel === v.channel.trim() && normalizeCloudUrl(c.cloud_url) === origin,
    );
    if (dup) errors.channel = "This channel of this cloud is already configured.";
  }
  return errors;
}

export function normalizeCloudUrl(u: string): string {
  return u.trim().replace(/\/+$/, "").toLowerCase();
}

export function formToInput(v: ChannelFormValues): ChannelInput {
  const targets: ChannelInput["targets"] = {};
  for (const row of v.targets) targets[row.id.trim()] = { url: row.url.trim() };
  return {
    key: v.key,
    cloud_url: v.cloud_url.trim().replace(/\/+$/, ""),
    channel: v.channel.trim(),
    protocol: v.protocol,
    default_target: v.default_target.trim() === "" ? null : v.default_target.trim(),
    targets,
    // Blank keeps the token stored in the keyring.
    token: v.token === "" ? null : v.token,
    // "" asks the backend to delete the stored admin token.
    admin_token: v.remove_admin_token ? "" : v.admin_token === "" ? null : v.admin_token,
  };
}

export function settingsToForm(c: SavedChannel | null): ChannelFormValues {
  if (!c) {
    return {
      key: null, cloud_url: "", channel: "", token: "", admin_token: "", protocol: "auto",
      default_target: "", targets: [], remove_admin_token: false,
    };
  }
  return {
    key: c.key,
    cloud_url: c.cloud_url,
    channel: c.channel,
    token: "",
    admin_token: "",
    protocol: c.protocol,
    default_target: c.default_target ?? "",
    targets: Object.entries(c.targets).map(([id, t]) => ({ id, url: t.url })),
    remove_admin_token: false,
  };
}

/** HOSTED.md §3: a self-service channel's short name, `^[a-z0-9][a-z0-9-]{0,39}$`. */
export function validateShortChannelName(name: string): string | null {
  if (name === "") return "Channel name is required.";
  if (name.length > 40) return "Channel name is at most 40 characters.";
  if (!/^[a-z0-9]/.test(name)) return "Channel name must start with a lower-case letter or digit.";
  if (!/^[a-z0-9][a-z0-9-]*$/.test(name)) return "Channel name may only contain lower-case letters, digits and '-'.";
  return null;
}

/** HOSTED.md §2: an account name, `^[a-z0-9][a-z0-9-]{1,31}$`; empty lets the cloud pick one. */
export function validateAccountName(name: string): string | null {
  if (name === "") return null;
  if (name.length < 2 || name.length > 32) return "Account name must be 2–32 characters.";
  if (!/^[a-z0-9][a-z0-9-]*$/.test(name)) return "Account name: lower-case letters, digits and '-', starting with a letter or digit.";
  return null;
}

/** HOSTED.md §2: keys are `whc_` followed by 32 random bytes. Empty: the backend uses the key
 * already in the keyring for that cloud (`webhook-connect login` writes the same entry). */
export function validateApiKey(key: string): string | null {
  const k = key.trim();
  if (k === "") return null;
  if (!k.startsWith("whc_")) return "An API key starts with whc_.";
  if (/\s/.test(k)) return "An API key has no spaces.";
  return null;
}
