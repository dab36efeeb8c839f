import { render } from "preact";
import { App } from "./components/App";
import { ipc } from "./ipc";
import { startLive } from "./live";
import { store } from "./store";
import "./styles.css";

async function boot() {
  // `npm run dev` in a plain browser: run against the in-memory fake backend. Dropped from builds.
  if (import.meta.env.DEV && !("__TAURI_INTERNALS__" in window)) {
    const { installFakeBackend } = await import("../tests/fake-backend");
    installFakeBackend({ tick: true });
  }
  const live = startLive({ ipc, store });
  const root = document.getElementById("app");
  if (root) render(<App refresh={() => void live.refresh()} />, root);
}

void boot();
