// In-memory stand-in for the Rust backend, behind Tauri's IPC mocks. Used by unit tests, the
// browser tests (bundled and injected before the app loads) and `npm run dev` in a plain browser.
import { mockIPC, mockWindows } from "@tauri-apps/api/mocks";
import { emit } from "@tauri-apps/api/event";
import type {
  AccountView,
  AppSettings,
  AppSnapshot,
  ChannelInput,
  CommandError,
  CreateAccountInput,
  NewChannelInput,
  RemoteChannel,
  SavedChannel,
  SignInInput,
} from "../src/generated/app";
import type {
  Attempt,
  LinkState,
  ChannelStatus,
  EventDetail,
  ReplayRequest,
  SeriesPoint,
  Transport,
} from "../src/generated/engine";
import type { DeadLetterList, MessageView } from "../src/generated/protocol";

interface ChannelRecord {
  settings: Omit<SavedChannel, "has_token" | "has_admin_token" | "webhook_url">;
  /** The URL the cloud returned (self-service channels). */
  webhookUrl?: string;
  token: string | null;
  adminToken: string | null;
  status: ChannelStatus;
  /** When a `connecting` channel becomes connected (or fails auth). */
  connectAt: number;
  events: EventDetail[];
  deadLetters: MessageView[];
}

export interface FakeOptions {
  /** Emit `snapshot` every second (and generate traffic when `traffic`). */
  tick?: boolean;
  traffic?: boolean;
  /** Start without channels. */
  empty?: boolean;
  /** Start signed in to no cloud. */
  noAccounts?: boolean;
  now?: () => number;
}

/** Small deterministic PRNG so screenshots and tests see the same data every run. */
function mulberry32(seed: number): () => number {
  let a = seed;
  return () => {
    a |= 0;
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const CHANNEL_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

function b64(text: string): string {
  return btoa(String.fromCharCode(...new TextEncoder().encode(text)));
}

function iso(ms: number): string {
  return new Date(ms).toISOString().replace("Z", "+00:00");
}

/** Commands reject with a `CommandError`, as Tauri does with a command's `Err(CommandError)`. */
function reject(message: string, code = "internal"): Promise<never> {
  const error: CommandError = { code, message };
  // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
  return Promise.reject(error);
}

/**
 * The core's refusals, worded as desktop/appcore's `CoreError` (and the engine's rules) words them.
 * The "real backend" browser case "the fake backend answers invalid input like the core" sends the
 * same inputs to both and fails on any difference.
 */
const refuse = {
  unknownChannel: (key: string) => reject(`unknown channel ${JSON.stringify(key)}`, "unknown_channel"),
  notSignedIn: (url: string) => reject(`not signed in to ${url}: sign in under Settings → Accounts`, "not_signed_in"),
  noAdminToken: (cloudUrl: string) =>
    reject(`no admin token for ${originOf(cloudUrl)}: edit the channel and enter one to manage dead letters`, "no_admin_token"),
  tokenRequired: () => reject("a channel token is required (it is stored in the OS keyring only)", "token_required"),
  invalid: (message: string) => reject(message, "invalid_input"),
};

function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return "";
  }
}

/** `http(s)://host…` as the engine accepts a channel's cloud URL or target. */
function isHttpUrl(url: string): boolean {
  try {
    const u = new URL(url);
    return (u.protocol === "http:" || u.protocol === "https:") && u.hostname !== "";
  } catch {
    return false;
  }
}

/** The self-service cloud URL check (the engine's `normalize_cloud_url`); null when fine. */
function cloudUrlError(raw: string): string | null {
  let u: URL;
  try {
    u = new URL(raw.trim());
  } catch {
    return `cloud URL ${JSON.stringify(raw)}: relative URL without a base`;
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") return `cloud URL ${JSON.stringify(raw)}: must be http:// or https://`;
  return null;
}

export class FakeBackend {
  paused = false;
  settings: AppSettings = { autostart: false, start_minimized: true, notifications: "errors", history_size: 1000, light_mode: true, no_tray: "keep_window" };
  notices: string[] = [];
  closed = false;
  quit = false;
  channels = new Map<string, ChannelRecord>();
  /** Accounts this "app" is signed in to. */
  accounts: AccountView[] = [];
  /** What the fake clouds know: API keys, and each account's channels (`<account>.<name>`). */
  cloudKeys = new Map<string, { cloud_url: string; account_id: string; name: string }>();
  remote = new Map<string, Omit<RemoteChannel, "local_key">[]>();
  /** Clouds whose URL contains this refuse sign-up (`keys` mode). */
  readonly closedSignup = "keys-only";
  calls: { cmd: string; args: Record<string, unknown> }[] = [];
  /** Snapshot events sent so far (with `tick`): a test that checks something does not come
   *  back waits for later snapshots instead of a fixed time. */
  snapshotsEmitted = 0;
  private failures = new Map<string, CommandError>();
  private rand = mulberry32(42);
  private seq = 1000;
  readonly now: () => number;

  constructor(opts: FakeOptions = {}) {
    this.now = opts.now ?? (() => Date.now());
    if (!opts.empty) this.seed();
    this.seedCloud(!opts.noAccounts);
  }

  /** The next call of `cmd` rejects with `message`. */
  failNext(cmd: string, message: string): void {
    this.failNextWith(cmd, { code: "internal", message });
  }

  /** The next call of `cmd` rejects with `error`. */
  failNextWith(cmd: string, error: CommandError): void {
    this.failures.set(cmd, error);
  }

  handle(cmd: string, rawArgs: unknown): unknown {
    const args = (rawArgs ?? {}) as Record<string, unknown>;
    this.calls.push({ cmd, args });
    const failure = this.failures.get(cmd);
    if (failure !== undefined) {
      this.failures.delete(cmd);
      return reject(failure.message, failure.code);
    }
    const key = args.key as string;
    const messageId = args.message_id as string;
    switch (cmd) {
      case "get_snapshot":
        return this.snapshot();
      case "list_channels":
        return [...this.channels.values()].map((c) => this.view(c));
      case "save_channel":
        return this.save(args.input as ChannelInput);
      case "remove_channel": {
        const c = this.get(key);
        if (!c) return refuse.unknownChannel(key);
        if (args.delete_at_cloud === true) {
          if (!c.settings.self_service) return reject(`${c.settings.channel} is not a self-service channel`, "invalid_input");
          const list = this.remote.get(c.settings.cloud_url) ?? [];
          this.remote.set(c.settings.cloud_url, list.filter((r) => r.channel !== c.settings.channel));
        }
        this.channels.delete(key);
        return null;
      }
      case "list_accounts":
        return this.accounts.map((a) => ({ ...a }));
      case "sign_in":
        return this.signIn(args.input as SignInInput);
      case "create_account":
        return this.createAccount(args.input as CreateAccountInput);
      case "sign_out": {
        const url = args.cloud_url as string;
        if (!this.accounts.some((a) => a.cloud_url === url)) return reject(`not signed in to ${url}`, "not_signed_in");
        this.accounts = this.accounts.filter((a) => a.cloud_url !== url);
        return null;
      }
      case "list_remote_channels":
        return this.remoteChannels(args.cloud_url as string);
      case "create_channel":
        return this.createChannel(args.input as NewChannelInput);
      case "use_remote_channel":
        return this.useRemote(args.cloud_url as string, args.channel as string, args.target_url as string);
      case "set_channel_enabled":
        return this.setEnabled(key, args.enabled as boolean);
      case "set_paused":
        this.setPaused(args.paused as boolean);
        return null;
      case "list_events":
        return this.get(key)?.events.map((e) => e.summary) ?? refuse.unknownChannel(key);
      case "get_event": {
        if (!this.get(key)) return refuse.unknownChannel(key);
        const e = this.get(key)?.events.find((x) => x.summary.message_id === messageId);
        return e ?? reject(`webhook ${messageId} is no longer in the history`, "unknown_event");
      }
      case "replay_event":
        return this.replay(args.request as ReplayRequest);
      case "list_dead_letters":
        return this.listDead(key, args.limit as number, args.offset as number);
      case "replay_dead_letter":
      case "delete_dead_letter": {
        const c = this.get(key);
        if (!c) return refuse.unknownChannel(key);
        if (!this.canManage(c)) return refuse.noAdminToken(c.settings.cloud_url);
        const i = c.deadLetters.findIndex((m) => m.message_id === messageId);
        if (i < 0) return reject(`Dead letter not found: ${messageId}`);
        c.deadLetters.splice(i, 1);
        if (c.status.queue) {
          c.status.queue.dead_letters = c.deadLetters.length;
          if (cmd === "replay_dead_letter") c.status.queue.pending += 1;
        }
        return { status: cmd === "replay_dead_letter" ? "replayed" : "deleted", channel: c.settings.channel, message_id: messageId };
      }
      case "purge_dead_letters": {
        const c = this.get(key);
        if (!c) return refuse.unknownChannel(key);
        if (!this.canManage(c)) return refuse.noAdminToken(c.settings.cloud_url);
        const n = c.deadLetters.length;
        c.deadLetters = [];
        if (c.status.queue) c.status.queue.dead_letters = 0;
        return n;
      }
      case "get_settings":
        return { ...this.settings };
      case "save_settings": {
        const s = args.settings as AppSettings;
        if (s.history_size < 1 || s.history_size > 100_000) return reject("history_size must be between 1 and 100000", "invalid_input");
        this.settings = { ...s };
        return { ...this.settings };
      }
      case "take_pending_view":
        return null;
      case "close_window":
        this.closed = true;
        return null;
      case "quit_app":
        this.quit = true;
        return null;
      default:
        return reject(`unknown command ${cmd}`);
    }
  }

  snapshot(): AppSnapshot {
    const now = this.now();
    for (const c of this.channels.values()) {
      if (c.status.state === "connecting" && now >= c.connectAt) this.finishConnect(c);
    }
    return { paused: this.paused, channels: [...this.channels.values()].map((c) => structuredClone(c.status)), notices: [...this.notices] };
  }

  /** One second of simulated life: maybe a webhook arrives on each connected channel. */
  tick(traffic: boolean): void {
    const now = this.now();
    for (const c of this.channels.values()) {
      if (c.status.state === "connecting" && now >= c.connectAt) this.finishConnect(c);
      const bucket = Math.floor(now / 10_000) * 10_000;
      const series = c.status.series;
      const lastPoint = series[series.length - 1];
      if (lastPoint && lastPoint.t_ms < bucket) {
        series.push({ t_ms: bucket, delivered: 0, failed: 0, p50_ms: null, p99_ms: null });
        if (series.length > 60) series.shift();
      }
      if (traffic && c.status.state === "connected" && !this.paused && this.rand() < 0.35) {
        const ev = this.makeEvent(c, now, this.pick(TEMPLATES));
        c.events.unshift(ev);
        this.account(c, ev);
        c.events.length = Math.min(c.events.length, this.settings.history_size);
      }
    }
  }

  /** A new channel's key, shaped like the core's (`settings::new_key`: `ch-` and 12 hex digits). */
  private newKey(): string {
    for (;;) {
      const key = `ch-${Array.from({ length: 12 }, () => Math.floor(this.rand() * 16).toString(16)).join("")}`;
      if (!this.channels.has(key)) return key;
    }
  }

  private get(key: string): ChannelRecord | undefined {
    return this.channels.get(key);
  }

  private pick<T>(xs: readonly [T, ...T[]]): T {
    return xs[Math.floor(this.rand() * xs.length)] ?? xs[0];
  }

  private view(c: ChannelRecord): SavedChannel {
    const firstId = Object.keys(c.settings.targets)[0] ?? c.settings.channel;
    return {
      ...structuredClone(c.settings),
      has_token: c.settings.self_service ? this.signedIn(c.settings.cloud_url) : c.token !== null,
      has_admin_token: c.adminToken !== null,
      webhook_url: c.webhookUrl ?? `${c.settings.cloud_url}/webhook/${firstId}`,
    };
  }

  /** In the core's order: the key, the cloud URL, the name, the token, then the targets. */
  private save(input: ChannelInput): unknown {
    let c = input.key ? this.get(input.key) : undefined;
    if (input.key && !c) return refuse.unknownChannel(input.key);
    const cloudUrl = input.cloud_url.trim().replace(/\/+$/, "");
    if (!isHttpUrl(cloudUrl)) return refuse.invalid(`cloud_url ${JSON.stringify(cloudUrl)} must be http(s)://host[:port][/base]`);
    const channel = input.channel.trim();
    if (!CHANNEL_RE.test(channel) || channel.includes("..")) {
      return refuse.invalid(`invalid channel name ${JSON.stringify(channel)}: letters, digits, '.', '_' and '-', starting with a letter or digit`);
    }
    if (!c && (input.token ?? "").trim() === "") return refuse.tokenRequired();
    if (input.default_target !== null && !isHttpUrl(input.default_target)) {
      return reject(`default_target.url ${JSON.stringify(input.default_target)} must be an http(s) URL`, "invalid_config");
    }
    const now = this.now();
    if (!c) {
      const key = this.newKey();
      c = {
        settings: { key, cloud_url: "", channel: "", protocol: "auto", default_target: null, targets: {}, enabled: true, self_service: false },
        token: null,
        adminToken: null,
        status: this.newStatus(key, channel, "connecting"),
        connectAt: now + 1500,
        events: [],
        deadLetters: [],
      };
      this.channels.set(key, c);
    }
    const reconnect = c.settings.cloud_url !== cloudUrl || c.settings.channel !== channel || input.token !== null;
    c.settings = {
      ...c.settings,
      cloud_url: cloudUrl,
      channel,
      protocol: input.protocol,
      default_target: input.default_target,
      targets: structuredClone(input.targets),
    };
    c.status.channel = input.channel;
    if (input.token !== null) c.token = input.token;
    if (input.admin_token !== null) c.adminToken = input.admin_token === "" ? null : input.admin_token;
    if (c.adminToken && !c.status.queue) c.status.queue = this.queue(0, 0);
    if (reconnect && c.settings.enabled && !this.paused) this.startConnect(c);
    return this.view(c);
  }

  private signedIn(cloud_url: string): boolean {
    return this.accounts.some((a) => a.cloud_url === cloud_url && a.has_key);
  }

  /** Dead letters need the admin token, or (self-service) the signed-in account's key. */
  private canManage(c: ChannelRecord): boolean {
    return c.adminToken !== null || (c.settings.self_service && this.signedIn(c.settings.cloud_url));
  }

  private seedCloud(signedIn: boolean): void {
    const cloud = "https://hooks.example.com";
    this.cloudKeys.set("whc_alice_0123456789abcdefghijklmnopqrstuvwxyzAB", { cloud_url: cloud, account_id: "acc_5f1c2a9e0b7d4c31", name: "alice" });
    const at = iso(this.now() - 3 * 86_400_000);
    const stats = (queued: number) => ({ messages_queued: queued, messages_in_flight: 0, dead_letters: 0, connected_clients: 0, messages_received: queued + 40, messages_acked: 40 });
    this.remote.set(cloud, [
      { channel: "alice.shop-dev", webhook_url: `${cloud}/webhook/wh_k3q7z2m9x4c8v1b6n5t0r2y7pd`, created_at: at, description: null, stats: stats(12) },
      { channel: "alice.billing", webhook_url: `${cloud}/webhook/wh_p8d2w6h1j9f4s3g7l0a5e2u8qz`, created_at: at, description: null, stats: stats(0) },
    ]);
    if (signedIn) this.accounts = [{ cloud_url: cloud, account_id: "acc_5f1c2a9e0b7d4c31", name: "alice", has_key: true }];
  }

  private signIn(input: SignInInput): unknown {
    const url = input.cloud_url.replace(/\/+$/, "");
    const bad = cloudUrlError(input.cloud_url);
    if (bad) return refuse.invalid(bad);
    if (input.api_key.trim() === "") return reject(`an API key is required: none is stored for ${url} (\`webhook-connect login\` stores one)`, "invalid_input");
    const known = this.cloudKeys.get(input.api_key.trim());
    if (!known || known.cloud_url !== url) return reject("The cloud refused this API key.", "api_key_rejected");
    this.accounts = [...this.accounts.filter((a) => a.cloud_url !== url), { cloud_url: url, account_id: known.account_id, name: known.name, has_key: true }];
    return this.accounts.find((a) => a.cloud_url === url);
  }

  private createAccount(input: CreateAccountInput): unknown {
    const bad = cloudUrlError(input.cloud_url);
    if (bad) return refuse.invalid(bad);
    const url = input.cloud_url.replace(/\/+$/, "");
    if (url.includes(this.closedSignup)) return reject("The cloud does not allow this: sign-up is closed", "forbidden");
    const name = input.name ?? `dev-${(this.seq++).toString(36)}`;
    if ([...this.cloudKeys.values()].some((k) => k.cloud_url === url && k.name === name)) return reject("That name is taken", "name_taken");
    const account_id = `acc_${(this.seq++).toString(16).padStart(16, "0")}`;
    this.cloudKeys.set(`whc_${name}_${account_id}`, { cloud_url: url, account_id, name });
    if (!this.remote.has(url)) this.remote.set(url, []);
    this.accounts = [...this.accounts.filter((a) => a.cloud_url !== url), { cloud_url: url, account_id, name, has_key: true }];
    return this.accounts.find((a) => a.cloud_url === url);
  }

  private remoteChannels(cloud_url: string): unknown {
    if (!this.signedIn(cloud_url)) return refuse.notSignedIn(cloud_url);
    const local = [...this.channels.values()];
    return (this.remote.get(cloud_url) ?? []).map((r) => ({
      ...structuredClone(r),
      local_key: local.find((c) => c.settings.cloud_url === cloud_url && c.settings.channel === r.channel)?.settings.key ?? null,
    }));
  }

  private createChannel(input: NewChannelInput): unknown {
    const account = this.accounts.find((a) => a.cloud_url === input.cloud_url && a.has_key);
    if (!account) return refuse.notSignedIn(input.cloud_url);
    if (!/^[a-z0-9][a-z0-9-]{0,39}$/.test(input.name)) return reject("invalid channel name", "invalid_input");
    if (!/^https?:\/\//.test(input.target_url)) return reject("target URL must be http(s)", "invalid_input");
    const list = this.remote.get(input.cloud_url) ?? [];
    const full = `${account.name}.${input.name}`;
    if (list.some((r) => r.channel === full)) return reject(`That name is taken: ${full}`, "name_taken");
    if (list.length >= 10) return reject("Your account is at its quota: max_channels is 10", "quota_exceeded");
    let id = "wh_";
    for (let i = 0; i < 26; i++) id += "abcdefghijklmnopqrstuvwxyz234567".charAt(Math.floor(this.rand() * 32));
    const webhook_url = `${input.cloud_url}/webhook/${id}`;
    list.push({ channel: full, webhook_url, created_at: iso(this.now()), description: null, stats: { messages_queued: 0, messages_in_flight: 0, dead_letters: 0, connected_clients: 0, messages_received: 0, messages_acked: 0 } });
    this.remote.set(input.cloud_url, list);
    return this.forwardHere(input.cloud_url, full, webhook_url, input.target_url);
  }

  private useRemote(cloud_url: string, channel: string, target_url: string): unknown {
    if (!this.signedIn(cloud_url)) return refuse.notSignedIn(cloud_url);
    const r = (this.remote.get(cloud_url) ?? []).find((x) => x.channel === channel);
    if (!r) return reject(`unknown channel ${channel}`, "unknown_channel");
    if (!/^https?:\/\//.test(target_url)) return reject("target URL must be http(s)", "invalid_input");
    return this.forwardHere(cloud_url, channel, r.webhook_url, target_url);
  }

  private forwardHere(cloud_url: string, channel: string, webhookUrl: string, target: string): SavedChannel {
    const key = this.newKey();
    const c: ChannelRecord = {
      settings: { key, cloud_url, channel, protocol: "auto", default_target: target, targets: {}, enabled: true, self_service: true },
      webhookUrl,
      token: null,
      adminToken: null,
      status: this.newStatus(key, channel, "connecting"),
      connectAt: this.now() + 1500,
      events: [],
      deadLetters: [],
    };
    this.channels.set(key, c);
    if (this.paused) c.status.state = "paused";
    return this.view(c);
  }

  private setEnabled(key: string, enabled: boolean): unknown {
    const c = this.get(key);
    if (!c) return refuse.unknownChannel(key);
    c.settings.enabled = enabled;
    if (enabled) this.startConnect(c);
    else Object.assign(c.status, { state: "disconnected", transport: null, connection_id: null, last_error: null });
    return null;
  }

  private setPaused(paused: boolean): void {
    this.paused = paused;
    for (const c of this.channels.values()) {
      if (!c.settings.enabled) continue;
      if (paused) c.status.state = "paused";
      else if (c.status.state === "paused") c.status.state = c.token === "bad-token" ? "auth_failed" : "connected";
    }
  }

  private startConnect(c: ChannelRecord): void {
    c.status.state = this.paused ? "paused" : "connecting";
    c.status.transport = null;
    c.status.connection_id = null;
    c.status.last_error = null;
    c.status.connection_attempts = 1;
    c.connectAt = this.now() + 1500;
  }

  private finishConnect(c: ChannelRecord): void {
    if (c.token === "bad-token") {
      Object.assign(c.status, { state: "auth_failed", last_error: "The cloud closed the connection: 4001 invalid channel token", connection_attempts: 1 });
      return;
    }
    const transport: Transport = c.settings.protocol === "auto" ? "websocket" : c.settings.protocol;
    Object.assign(c.status, { state: "connected", transport, connection_id: `conn_${(this.seq++).toString(36)}`, last_error: null });
    if (c.status.queue) c.status.queue.connected = true;
  }

  private newStatus(key: string, channel: string, state: LinkState, series: SeriesPoint[] = []): ChannelStatus {
    const now = this.now();
    if (series.length === 0) {
      const bucket = Math.floor(now / 10_000) * 10_000;
      for (let i = 59; i >= 0; i--) series.push({ t_ms: bucket - i * 10_000, delivered: 0, failed: 0, p50_ms: null, p99_ms: null });
    }
    return {
      key,
      channel,
      state,
      transport: null,
      connection_id: null,
      last_error: null,
      connection_attempts: 1,
      counters: { received: 0, delivered: 0, failed: 0, retried: 0, dead_lettered: 0 },
      in_flight: 0,
      latency: { p50_ms: null, p90_ms: null, p99_ms: null, samples: 0 },
      series,
      queue: null,
      last_event_at: null,
    };
  }

  private queue(pending: number, dead: number): ChannelStatus["queue"] {
    return { pending, in_flight: 0, delayed: 0, dead_letters: dead, connected: true, at: iso(this.now()) };
  }

  private account(c: ChannelRecord, ev: EventDetail): void {
    const s = ev.summary;
    const k = c.status.counters;
    k.received++;
    if (s.outcome === "delivered") k.delivered++;
    if (s.outcome === "failed" || s.outcome === "dead_letter") k.failed++;
    if (s.outcome === "dead_letter") k.dead_lettered++;
    if (s.attempts > 1) k.retried += s.attempts - 1;
    c.status.last_event_at = s.received_at;
    const last = c.status.series[c.status.series.length - 1];
    if (last) {
      if (s.outcome === "delivered") last.delivered++;
      else last.failed++;
      last.p50_ms = Math.round(s.duration_ms * 0.8);
      last.p99_ms = s.duration_ms;
    }
  }

  private makeEvent(c: ChannelRecord, at: number, t: Template, replayOf: string | null = null, overrides?: { target?: string; headers?: [string, string][]; body?: string }): EventDetail {
    const id = `msg_${(this.seq++).toString(36).padStart(6, "0")}`;
    const target = overrides?.target ?? c.settings.targets[t.webhookId]?.url ?? c.settings.default_target ?? "http://localhost:3000/";
    const bodyText = overrides?.body ?? (t.binary ? null : t.body);
    const bodyB64 = bodyText !== null ? b64(bodyText) : t.body;
    const refused = /:9(\/|$)/.test(target);
    const attempts: Attempt[] = [];
    const n = replayOf ? 1 : t.attempts;
    for (let i = 0; i < n; i++) {
      const last = i === n - 1;
      const status = refused ? null : last ? t.status : 503;
      const dur = Math.round(t.duration * (0.7 + this.rand() * 0.6));
      attempts.push({
        at: iso(at + i * 1000),
        target_url: target,
        status: replayOf && !refused ? 200 : status,
        duration_ms: dur,
        response_headers: status === null ? [] : [["content-type", "application/json"], ["x-request-id", `req-${id}-${i}`]],
        response_body_excerpt: status === null ? "" : (replayOf ? 200 : status) < 300 ? '{"ok":true}' : '{"error":"Service temporarily unavailable"}',
        error: refused ? "error sending request: Connection refused (os error 111)" : null,
      });
    }
    const last = attempts[attempts.length - 1];
    const outcome = refused ? "failed" : replayOf ? "delivered" : t.outcome;
    return {
      summary: {
        message_id: id,
        webhook_id: t.webhookId,
        received_at: iso(at),
        method: t.method,
        path: t.path,
        target_url: target,
        response_status: outcome === "in_flight" ? null : last?.status ?? null,
        duration_ms: attempts.reduce((a, x) => a + x.duration_ms, 0),
        attempts: attempts.length,
        outcome,
        replay_of: replayOf,
      },
      request: {
        method: t.method,
        path: t.path,
        query: t.query,
        headers: overrides?.headers ?? t.headers,
        body_text: bodyText,
        body_base64: bodyB64,
        body_len: bodyText !== null ? new TextEncoder().encode(bodyText).length : atob(bodyB64).length,
        body_truncated: false,
        content_type: (overrides?.headers ?? t.headers).find(([k]) => k.toLowerCase() === "content-type")?.[1] ?? null,
      },
      attempts: outcome === "in_flight" ? [] : attempts,
    };
  }

  private replay(r: ReplayRequest): unknown {
    const c = this.get(r.key);
    if (!c) return refuse.unknownChannel(r.key);
    const orig = c.events.find((e) => e.summary.message_id === r.message_id);
    if (!orig) return reject(`webhook ${r.message_id} is no longer in the history`);
    if (r.target_url !== null && !/^https?:\/\//.test(r.target_url)) return reject("target_url must be an http(s) URL");
    const t: Template = {
      webhookId: orig.summary.webhook_id,
      method: orig.request.method ?? "POST",
      path: orig.request.path ?? "/",
      query: orig.request.query,
      headers: orig.request.headers,
      body: orig.request.body_text ?? orig.request.body_base64,
      binary: orig.request.body_text === null,
      status: 200,
      outcome: "delivered",
      attempts: 1,
      duration: 35,
    };
    const body = r.body_base64 !== null ? new TextDecoder().decode(Uint8Array.from(atob(r.body_base64), (ch) => ch.charCodeAt(0))) : undefined;
    const ev = this.makeEvent(c, this.now(), t, orig.summary.message_id, {
      target: r.target_url ?? orig.summary.target_url ?? undefined,
      headers: r.headers ?? undefined,
      body,
    });
    c.events.unshift(ev);
    this.account(c, ev);
    return structuredClone(ev);
  }

  private listDead(key: string, limit: number, offset: number): unknown {
    const c = this.get(key);
    if (!c) return refuse.unknownChannel(key);
    if (!this.canManage(c)) return refuse.noAdminToken(c.settings.cloud_url);
    const list: DeadLetterList = {
      channel: c.settings.channel,
      total: c.deadLetters.length,
      count: 0,
      messages: structuredClone(c.deadLetters.slice(offset, offset + limit)),
    };
    list.count = list.messages.length;
    return list;
  }

  private deadLetter(c: ChannelRecord, at: number, t: Template, reason: MessageView["reason"], error: string, attempts: number): MessageView {
    const id = `dlq_${(this.seq++).toString(36).padStart(6, "0")}`;
    return {
      message_id: id,
      channel: c.settings.channel,
      webhook_id: t.webhookId,
      timestamp: iso(at),
      expires_at: iso(at + 86_400_000),
      metadata: {},
      headers: Object.fromEntries(t.headers),
      payload: t.binary ? null : safeJson(t.body),
      sequence: this.seq,
      delivery_count: attempts,
      state: "dead_lettered",
      method: t.method,
      path: t.path,
      query: t.query ?? "",
      content_type: t.headers.find(([k]) => k === "content-type")?.[1] ?? null,
      namespace: null,
      first_attempt_at: iso(at + 200),
      last_attempt_at: iso(at + 200 + attempts * 4000),
      last_error: error,
      reason,
      dead_lettered_at: iso(at + 300 + attempts * 4000),
      raw_headers: t.headers,
      body_b64: t.binary ? t.body : b64(t.body),
    };
  }

  private seed(): void {
    const now = this.now();
    const rand = this.rand;
    const bucket = Math.floor(now / 10_000) * 10_000;
    const series = (scale: number, failRate: number, base: number): SeriesPoint[] =>
      Array.from({ length: 60 }, (_, i) => {
        const wave = 0.5 + 0.5 * Math.sin(i / 6);
        const delivered = Math.round(scale * wave * (0.6 + rand() * 0.8));
        const failed = rand() < failRate ? 1 + Math.floor(rand() * 2) : 0;
        const p50 = delivered + failed > 0 ? Math.round(base * (0.8 + rand() * 0.4)) : null;
        return { t_ms: bucket - (59 - i) * 10_000, delivered, failed, p50_ms: p50, p99_ms: p50 === null ? null : Math.round(p50 * (2 + rand() * 2.5)) };
      });

    const alpha: ChannelRecord = {
      settings: {
        key: "team-alpha",
        cloud_url: "https://relay.example.com",
        channel: "team-alpha",
        protocol: "auto",
        default_target: "http://localhost:8080/fallback",
        targets: { "github-main": { url: "http://localhost:3000/hooks/github" }, stripe: { url: "http://localhost:4242/stripe/webhook" } },
        enabled: true,
        self_service: false,
      },
      token: "t-alpha",
      adminToken: "a-alpha",
      status: this.newStatus("team-alpha", "team-alpha", "connected", series(9, 0.12, 42)),
      connectAt: 0,
      events: [],
      deadLetters: [],
    };
    Object.assign(alpha.status, { transport: "websocket", connection_id: "conn_7f3a", queue: this.queue(3, 0) });
    const seq = [tpl(0), tpl(1), tpl(2), tpl(0), tpl(3), tpl(4), tpl(1), tpl(5), tpl(0), tpl(2), tpl(1), tpl(0)];
    seq.forEach((t, i) => {
      const ev = this.makeEvent(alpha, now - (seq.length - i) * 23_000, t);
      alpha.events.unshift(ev);
      this.account(alpha, ev);
    });
    alpha.status.series = series(9, 0.12, 42);
    Object.assign(alpha.status.counters, { received: 1289, delivered: 1262, failed: 19, retried: 41, dead_lettered: 3 });
    alpha.status.latency = { p50_ms: 41, p90_ms: 96, p99_ms: 187, samples: 1262 };
    alpha.deadLetters = [
      this.deadLetter(alpha, now - 3_600_000, tpl(4), "rejected", "415 Unsupported Media Type from http://localhost:3000/hooks/github", 1),
      this.deadLetter(alpha, now - 1_800_000, tpl(1), "max_delivery_attempts", "503 Service Unavailable after 5 attempts", 5),
      this.deadLetter(alpha, now - 600_000, tpl(2), "expired", "message expired before delivery", 2),
    ];
    alpha.status.queue = this.queue(3, alpha.deadLetters.length);

    const ci: ChannelRecord = {
      settings: {
        key: "ci-events",
        cloud_url: "https://relay-eu.example.com",
        channel: "ci-events",
        protocol: "long_poll",
        default_target: "http://localhost:9000/ci",
        targets: {},
        enabled: true,
        self_service: false,
      },
      token: "t-ci",
      adminToken: null,
      status: this.newStatus("ci-events", "ci-events", "degraded", series(2, 0.05, 120)),
      connectAt: 0,
      events: [],
      deadLetters: [],
    };
    Object.assign(ci.status, {
      transport: "long_poll",
      connection_id: "conn_91bc",
      last_error: "WebSocket and SSE failed (proxy closed the connection); using long-poll",
      connection_attempts: 3,
      last_event_at: iso(now - 95_000),
      latency: { p50_ms: 118, p90_ms: 260, p99_ms: 512, samples: 214 },
    });
    Object.assign(ci.status.counters, { received: 216, delivered: 214, failed: 2, retried: 5, dead_lettered: 0 });
    const ev = this.makeEvent(ci, now - 95_000, tpl(6));
    ci.events.unshift(ev);

    const stripe: ChannelRecord = {
      settings: {
        key: "payments-dev",
        cloud_url: "https://relay.example.com",
        channel: "payments-dev",
        protocol: "websocket",
        default_target: "http://localhost:4242/stripe/webhook",
        targets: {},
        enabled: true,
        self_service: false,
      },
      token: "bad-token",
      adminToken: null,
      status: this.newStatus("payments-dev", "payments-dev", "auth_failed"),
      connectAt: 0,
      events: [],
      deadLetters: [],
    };
    Object.assign(stripe.status, { last_error: "The cloud closed the connection: 4001 invalid channel token", connection_attempts: 1 });

    for (const c of [alpha, ci, stripe]) this.channels.set(c.settings.key, c);
  }
}

function tpl(i: number): Template {
  const t = TEMPLATES[i];
  if (!t) throw new Error(`no template ${i}`);
  return t;
}

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return s;
  }
}

interface Template {
  webhookId: string;
  method: string;
  path: string;
  query: string | null;
  headers: [string, string][];
  /** Text body, or base64 when `binary`. */
  body: string;
  binary: boolean;
  status: number;
  outcome: EventDetail["summary"]["outcome"];
  attempts: number;
  duration: number;
}

const PUSH = JSON.stringify({
  ref: "refs/heads/main",
  before: "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
  after: "76ae82c7b1a177c8d03f9e96e0adf2466113728f",
  repository: { id: 1296269, full_name: "octo-org/webhook-connect", private: false },
  pusher: { name: "alice", email: "alice@example.com" },
  commits: [{ id: "76ae82c", message: "Fix the replay button's focus ring", author: { name: "Alice" } }],
});

const TEMPLATES: readonly [Template, ...Template[]] = [
  {
    webhookId: "github-main",
    method: "POST",
    path: "/webhook/github-main",
    query: null,
    headers: [["content-type", "application/json"], ["user-agent", "GitHub-Hookshot/7a1b2c3"], ["x-github-event", "push"], ["x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"], ["x-hub-signature-256", "sha256=9f2c0b6e5c1d4a7e8b3f"]],
    body: PUSH,
    binary: false,
    status: 200,
    outcome: "delivered",
    attempts: 1,
    duration: 38,
  },
  {
    webhookId: "stripe",
    method: "POST",
    path: "/webhook/stripe",
    query: null,
    headers: [["content-type", "application/json; charset=utf-8"], ["stripe-signature", "t=1700000000,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd"], ["user-agent", "Stripe/1.0 (+https://stripe.com/docs/webhooks)"]],
    body: JSON.stringify({ id: "evt_1Nq2", type: "payment_intent.succeeded", data: { object: { id: "pi_3Nq", amount: 2000, currency: "eur", metadata: { order: "A-1009" } } } }),
    binary: false,
    status: 200,
    outcome: "delivered",
    attempts: 2,
    duration: 61,
  },
  {
    webhookId: "forms",
    method: "POST",
    path: "/webhook/forms",
    query: "source=landing&ref=it's",
    headers: [["content-type", "application/x-www-form-urlencoded"], ["user-agent", "curl/8.5.0"]],
    body: "name=O%27Brien&email=ob%40example.com&message=Hello+there",
    binary: false,
    status: 500,
    outcome: "retry",
    attempts: 3,
    duration: 120,
  },
  {
    webhookId: "github-main",
    method: "POST",
    path: "/webhook/github-main",
    query: null,
    headers: [["content-type", "application/json"], ["x-github-event", "ping"]],
    body: JSON.stringify({ zen: "Design for failure.", hook_id: 42 }),
    binary: false,
    status: 200,
    outcome: "delivered",
    attempts: 1,
    duration: 22,
  },
  {
    webhookId: "camera",
    method: "PUT",
    path: "/webhook/camera",
    query: null,
    headers: [["content-type", "image/png"], ["x-device", "cam-7"]],
    body: "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==",
    binary: true,
    status: 415,
    outcome: "dead_letter",
    attempts: 1,
    duration: 12,
  },
  {
    webhookId: "alerts",
    method: "POST",
    path: "/webhook/alerts",
    query: null,
    headers: [["content-type", "text/plain"]],
    body: "disk usage on build-3 at 91%",
    binary: false,
    status: 200,
    outcome: "in_flight",
    attempts: 1,
    duration: 0,
  },
  {
    webhookId: "ci",
    method: "POST",
    path: "/webhook/ci",
    query: null,
    headers: [["content-type", "application/json"], ["x-gitlab-event", "Pipeline Hook"]],
    body: JSON.stringify({ object_kind: "pipeline", object_attributes: { status: "success", ref: "main", duration: 312 } }),
    binary: false,
    status: 200,
    outcome: "delivered",
    attempts: 1,
    duration: 110,
  },
];

declare global {
  interface Window {
    __fakeBackend?: FakeBackend;
    __FAKE_OPTIONS__?: FakeOptions;
  }
}

/** Installs the fake behind `@tauri-apps/api`'s IPC mocks (events included) and returns it. */
export function installFakeBackend(opts: FakeOptions = {}): FakeBackend {
  const backend = new FakeBackend(opts);
  mockWindows("main");
  mockIPC((cmd, args) => backend.handle(cmd, args), { shouldMockEvents: true });
  if (opts.tick) {
    setInterval(() => {
      backend.tick(opts.traffic ?? true);
      backend.snapshotsEmitted += 1;
      void emit("snapshot", backend.snapshot());
    }, 1000);
  }
  window.__fakeBackend = backend;
  return backend;
}
