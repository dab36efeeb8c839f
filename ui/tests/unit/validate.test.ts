import { describe, expect, it } from "vitest";
import type { SavedChannel } from "../../src/generated/app";
import {
  formToInput,
  settingsToForm,
  validateChannelForm,
  validateChannelName,
  validateAccountName,
  validateApiKey,
  validateHttpUrl,
  validateShortChannelName,
  validateWebhookKey,
  type ChannelFormValues,
} from "../../src/lib/validate";

const existing: SavedChannel = {
  key: "team-alpha", cloud_url: "https://relay.example.com", channel: "team-alpha", protocol: "auto",
  default_target: "http://localhost:8080/", targets: { "github-main": { url: "http://localhost:3000/" } },
  enabled: true, has_token: true, has_admin_token: false, webhook_url: "https://relay.example.com/webhook/github-main", self_service: false,
};

const form = (patch: Partial<ChannelFormValues> = {}): ChannelFormValues => ({
  key: null, cloud_url: "https://relay.example.com", channel: "team-beta", token: "tok", admin_token: "",
  protocol: "auto", default_target: "http://localhost:3000/hook", targets: [], remove_admin_token: false, ...patch,
});

describe("URL validation", () => {
  it("accepts http and https URLs only", () => {
    expect(validateHttpUrl("http://localhost:3000/x", "URL")).toBeNull();
    expect(validateHttpUrl("https://relay.example.com", "URL")).toBeNull();
    expect(validateHttpUrl("", "Cloud URL")).toBe("Cloud URL is required.");
    expect(validateHttpUrl("localhost:3000", "URL")).toMatch(/http:\/\/ or https:\/\//);
    expect(validateHttpUrl("ws://relay", "URL")).toMatch(/http:\/\/ or https:\/\//);
    expect(validateHttpUrl("not a url", "URL")).toMatch(/not a valid URL/);
  });
});

describe("channel names (PROTOCOL.md §1.4)", () => {
  it("accepts 1–128 characters of [A-Za-z0-9._-] starting alphanumeric", () => {
    expect(validateChannelName("a")).toBeNull();
    expect(validateChannelName("team-alpha.v2_x")).toBeNull();
    expect(validateChannelName("a".repeat(128))).toBeNull();
  });
  it("rejects the rest with a specific message", () => {
    expect(validateChannelName("")).toMatch(/required/);
    expect(validateChannelName("a".repeat(129))).toMatch(/at most 128/);
    expect(validateChannelName(".hidden")).toMatch(/start with a letter or digit/);
    expect(validateChannelName("-x")).toMatch(/start with a letter or digit/);
    expect(validateChannelName("a b")).toMatch(/may only contain/);
    expect(validateChannelName("a/b")).toMatch(/may only contain/);
    expect(validateChannelName("a..b")).toMatch(/'\.\.'/);
  });
});

describe("webhook ids (PROTOCOL.md §2.2)", () => {
  it("accepts ids and namespace/id keys", () => {
    expect(validateWebhookKey("github-main")).toBeNull();
    expect(validateWebhookKey("prod/stripe_1")).toBeNull();
  });
  it("rejects bad ids", () => {
    expect(validateWebhookKey("")).toMatch(/required/);
    expect(validateWebhookKey("a".repeat(65))).toMatch(/1–64/);
    expect(validateWebhookKey("_x")).toMatch(/starting with a letter/);
    expect(validateWebhookKey("a.b")).toMatch(/letters, digits/);
    expect(validateWebhookKey("a--b")).toMatch(/'--'/);
    expect(validateWebhookKey("Admin")).toMatch(/reserved/);
    expect(validateWebhookKey("system_x")).toMatch(/must not start/);
    expect(validateWebhookKey("x_internal")).toMatch(/must not start/);
    expect(validateWebhookKey("bad ns/id")).toMatch(/Namespace/);
    expect(validateWebhookKey("ns/")).toMatch(/1–64/);
  });
});

describe("channel form", () => {
  const opts = { hasStoredToken: false, existing: [existing] };
  it("is valid when complete", () => {
    expect(validateChannelForm(form(), opts)).toEqual({});
  });
  it("requires a token for a new channel but not when one is stored", () => {
    expect(validateChannelForm(form({ token: "" }), opts).token).toMatch(/required/);
    expect(validateChannelForm(form({ token: "" }), { ...opts, hasStoredToken: true }).token).toBeUndefined();
  });
  it("needs a delivery target (CONFIG.md §7.6)", () => {
    expect(validateChannelForm(form({ default_target: "" }), opts).default_target).toMatch(/default target or add/);
    expect(validateChannelForm(form({ default_target: "", targets: [{ id: "gh", url: "http://localhost:1/" }] }), opts)).toEqual({});
  });
  it("checks each target row and duplicates", () => {
    const errs = validateChannelForm(
      form({ targets: [{ id: "gh", url: "http://a/" }, { id: "gh", url: "ftp://b" }, { id: "", url: "" }] }),
      opts,
    );
    expect(errs["targets.0.id"]).toBeUndefined();
    expect(errs["targets.1.id"]).toMatch(/listed twice/);
    expect(errs["targets.1.url"]).toMatch(/http:\/\//);
    expect(errs["targets.2.id"]).toMatch(/required/);
    expect(errs["targets.2.url"]).toMatch(/required/);
  });
  it("refuses the same channel of the same cloud twice, but not the channel being edited", () => {
    expect(validateChannelForm(form({ channel: "team-alpha", cloud_url: "https://RELAY.example.com/" }), opts).channel).toMatch(/already configured/);
    expect(validateChannelForm(form({ key: "team-alpha", channel: "team-alpha" }), opts).channel).toBeUndefined();
    expect(validateChannelForm(form({ channel: "team-alpha", cloud_url: "https://other.example.com" }), opts).channel).toBeUndefined();
  });
  it("turns the form into a ChannelInput: trimmed, blank tokens kept as null", () => {
    const input = formToInput(form({
      cloud_url: " https://relay.example.com/ ", channel: " team-beta ", token: "", admin_token: "adm",
      default_target: " ", targets: [{ id: " gh ", url: " http://localhost:3000/x " }],
    }));
    expect(input).toEqual({
      key: null, cloud_url: "https://relay.example.com", channel: "team-beta", protocol: "auto", default_target: null,
      targets: { gh: { url: "http://localhost:3000/x" } }, token: null, admin_token: "adm",
    });
  });
  it("asks to delete the stored admin token with an empty string", () => {
    expect(formToInput(form({ admin_token: "", remove_admin_token: true })).admin_token).toBe("");
    expect(formToInput(form({ admin_token: "" })).admin_token).toBeNull();
  });
  it("fills the form from settings without any token", () => {
    const v = settingsToForm(existing);
    expect(v.token).toBe("");
    expect(v.admin_token).toBe("");
    expect(v.targets).toEqual([{ id: "github-main", url: "http://localhost:3000/" }]);
    expect(settingsToForm(null).protocol).toBe("auto");
  });
});

describe("self-service names and keys (HOSTED.md §2–3)", () => {
  it("checks a channel's short name", () => {
    expect(validateShortChannelName("shop-dev")).toBeNull();
    expect(validateShortChannelName("d")).toBeNull();
    expect(validateShortChannelName("a".repeat(40))).toBeNull();
    expect(validateShortChannelName("")).toMatch(/required/);
    expect(validateShortChannelName("a".repeat(41))).toMatch(/40/);
    expect(validateShortChannelName("Shop")).toMatch(/lower-case/);
    expect(validateShortChannelName("-shop")).toMatch(/start/);
    expect(validateShortChannelName("shop.dev")).toMatch(/only contain/);
  });

  it("checks an account name, empty letting the cloud pick one", () => {
    expect(validateAccountName("")).toBeNull();
    expect(validateAccountName("alice")).toBeNull();
    expect(validateAccountName("a")).toMatch(/2–32/);
    expect(validateAccountName("a".repeat(33))).toMatch(/2–32/);
    expect(validateAccountName("Alice")).toMatch(/lower-case/);
  });

  it("checks the shape of an API key", () => {
    expect(validateApiKey("whc_abc")).toBeNull();
    expect(validateApiKey("  ")).toBeNull();
    expect(validateApiKey("tok_abc")).toMatch(/whc_/);
    expect(validateApiKey("whc_a b")).toMatch(/spaces/);
  });
});
