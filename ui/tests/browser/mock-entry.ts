// Injected into the built app by the browser tests before any app script runs.
// `?tick=0` in the page URL: no `snapshot` events, so the app must fall back to polling.
// `?accounts=0`: signed in to no cloud.
// `?backend=<url>`: the real app core behind a test bridge at <url> instead of the fake.
import { installBridgeBackend } from "./bridge-backend";
import { installFakeBackend } from "../fake-backend";

const params = new URLSearchParams(location.search);
const bridge = params.get("backend");
if (bridge) installBridgeBackend(bridge);
else installFakeBackend({ tick: params.get("tick") !== "0", traffic: params.get("traffic") === "1", noAccounts: params.get("accounts") === "0" });
