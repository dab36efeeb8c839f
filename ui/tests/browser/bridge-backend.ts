// The browser tests' "real backend" mode: every IPC call goes over HTTP to a test bridge serving
// the real app core (desktop/app/tests/it/ui_bridge.rs), so validation and results come from Rust,
// not from the fake backend.
import { mockIPC, mockWindows } from "@tauri-apps/api/mocks";

export function installBridgeBackend(url: string): void {
  mockWindows("main");
  mockIPC(
    async (cmd, args) => {
      // text/plain keeps it a simple request (no CORS preflight); the bridge parses the JSON.
      const r = await fetch(`${url}/invoke/${cmd}`, { method: "POST", headers: { "content-type": "text/plain" }, body: JSON.stringify(args ?? {}) });
      // The bridge answers 200 with `{ ok }` or `{ error }`: a refusal is an answer, not a failed
      // request (which the browser would log as an error in the page).
      const body = (await r.json()) as { ok?: unknown; error?: unknown };
      if (!r.ok) throw new Error(`bridge: HTTP ${r.status}`);
      if ("error" in body) throw body.error;
      return body.ok;
    },
    { shouldMockEvents: true },
  );
}
