#!/usr/bin/env python3
"""Memory and start-time figures of the desktop app (docs/BENCHMARKS.md, "Desktop app").

Starts a real cloud and a local HTTP target, then the app twice: with the window open, and in
light mode (no webview). For each: time from exec to the channel being connected at the cloud,
then RSS and PSS summed over the app's process tree (WebKit web/network processes included),
idle and while forwarding 100 webhooks/s.

Run inside a display and a D-Bus session, from the repository root, after building:
  xvfb-run -a -s "-screen 0 1400x900x24" dbus-run-session -- python3 desktop/app/bench/measure.py
Environment: APP (app binary), CLOUD (cloud binary), SECONDS_LOAD (load duration, default 30),
SCENARIOS (comma list of window_open, light_mode).
"""

import http.client
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../../.."))
TARGET_DIR = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target-app"))
APP = os.environ.get("APP", os.path.join(TARGET_DIR, "debug/webhook-connect-app"))
CLOUD = os.environ.get("CLOUD", os.path.join(TARGET_DIR, "debug/webhook-connect-cloud"))
LOAD_SECONDS = int(os.environ.get("SECONDS_LOAD", "30"))
RATE = 100
ADMIN = "bench-admin-token"
TOKEN = "bench-channel-token"
CHANNEL = "bench"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Target(http.server.BaseHTTPRequestHandler):
    count = 0
    lock = threading.Lock()

    def do_POST(self):
        n = int(self.headers.get("content-length") or 0)
        self.rfile.read(n)
        with Target.lock:
            Target.count += 1
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *a):
        pass


def children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = open(f"/proc/{d}/stat").read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def tree(root):
    kids = children_map()
    out, i = [root], 0
    while i < len(out):
        out.extend(kids.get(out[i], []))
        i += 1
    return out


def mem(root):
    """(rss_kib, pss_kib, [(comm, rss, pss)]) summed over the tree."""
    rss = pss = 0
    procs = []
    for pid in tree(root):
        try:
            comm = open(f"/proc/{pid}/comm").read().strip()
            r = p = 0
            for line in open(f"/proc/{pid}/smaps_rollup"):
                if line.startswith("Rss:"):
                    r = int(line.split()[1])
                elif line.startswith("Pss:"):
                    p = int(line.split()[1])
        except OSError:
            continue
        rss += r
        pss += p
        procs.append((comm, r, p))
    return rss, pss, procs


def sample(root, seconds):
    xs = []
    end = time.time() + seconds
    while time.time() < end:
        xs.append(mem(root))
        time.sleep(0.5)
    rss = [x[0] for x in xs]
    pss = [x[1] for x in xs]
    return {
        "rss_avg_mib": sum(rss) / len(rss) / 1024,
        "rss_max_mib": max(rss) / 1024,
        "pss_avg_mib": sum(pss) / len(pss) / 1024,
        "pss_max_mib": max(pss) / 1024,
        "processes": sorted({c for c, _, _ in xs[-1][2]}),
    }


def admin(base, path):
    rq = urllib.request.Request(base + "/admin/webhook-connect" + path,
                                headers={"authorization": "Bearer " + ADMIN})
    with urllib.request.urlopen(rq, timeout=5) as r:
        return json.load(r)


def send_load(port, seconds):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = json.dumps({"event": "bench", "pad": "x" * 400})
    sent = 0
    t0 = time.time()
    while time.time() - t0 < seconds:
        due = t0 + sent / RATE
        now = time.time()
        if due > now:
            time.sleep(due - now)
        conn.request("POST", f"/webhook/{CHANNEL}", body, {"content-type": "application/json"})
        r = conn.getresponse()
        r.read()
        if r.status == 200:
            sent += 1
    return sent


def run_app(home, window_open, base, cloud_port):
    cfg_dir = os.path.join(home, ".config", "dev.webhookconnect.desktop")
    os.makedirs(cfg_dir, exist_ok=True)
    with open(os.path.join(cfg_dir, "settings.toml"), "w") as f:
        f.write(f"""[app]
start_minimized = {"false" if window_open else "true"}
notifications = "none"

[[channels]]
key = "bench"
channel = "{CHANNEL}"
cloud_url = "{base}"
protocol = "websocket"
token = "{TOKEN}"

[channels.default_target]
url = "http://127.0.0.1:{Target.port}/hook"
""")
    env = dict(os.environ, HOME=home, XDG_CONFIG_HOME=os.path.join(home, ".config"),
               RUST_LOG="warn")
    t0 = time.time()
    app = subprocess.Popen([APP], env=env, stdout=subprocess.DEVNULL,
                           stderr=open(os.path.join(home, "app.log"), "a"))
    connected = None
    while time.time() - t0 < 60:
        try:
            if admin(base, f"/channels/{CHANNEL}/stats")["connected_clients"] >= 1:
                connected = time.time() - t0
                break
        except Exception:
            pass
        time.sleep(0.05)
    if connected is None:
        app.kill()
        raise SystemExit("app never connected; see " + os.path.join(home, "app.log"))
    time.sleep(10)  # settle: the window loads, first ticks run
    idle = sample(app.pid, 10)
    before = Target.count
    result = {}
    loader = threading.Thread(target=lambda: result.update(sent=send_load(cloud_port, LOAD_SECONDS)))
    loader.start()
    time.sleep(LOAD_SECONDS / 3)
    load = sample(app.pid, LOAD_SECONDS * 2 / 3 - 1)
    loader.join()
    deadline = time.time() + 30
    while Target.count - before < result["sent"] and time.time() < deadline:
        time.sleep(0.2)
    delivered = Target.count - before
    app.send_signal(signal.SIGTERM)
    try:
        app.wait(10)
    except subprocess.TimeoutExpired:
        app.kill()
        app.wait()
    return {"start_to_connected_s": connected, "idle": idle, "load": load,
            "sent": result["sent"], "delivered": delivered}


def main():
    for p in (APP, CLOUD):
        if not os.path.exists(p):
            raise SystemExit(f"missing {p}: cargo build -p webhook-connect-app -p connect-cloud --bins")
    tmp = tempfile.mkdtemp(prefix="app-bench-")
    home = os.path.join(tmp, "home")
    os.makedirs(home)
    # A real Secret Service for the token the app moves out of settings.toml.
    if os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        subprocess.run(["gnome-keyring-daemon", "--unlock", "--components=secrets"],
                       input=b"bench", env=dict(os.environ, HOME=home),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    Target.port = free_port()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", Target.port), Target)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    with open(os.path.join(tmp, "webhooks.json"), "w") as f:
        json.dump({CHANNEL: {"data_type": "json", "module": "webhook_connect",
                             "module-config": {"channel": CHANNEL, "channel_token": TOKEN,
                                               "max_queue_size": 100000}}}, f)
    cloud_port = free_port()
    base = f"http://127.0.0.1:{cloud_port}"
    cloud = subprocess.Popen([CLOUD], env=dict(
        os.environ, WEBHOOK_CONNECT_LISTEN=f"127.0.0.1:{cloud_port}",
        WEBHOOK_CONNECT_DATA_DIR=os.path.join(tmp, "data"),
        WEBHOOKS_CONFIG_FILE=os.path.join(tmp, "webhooks.json"),
        WEBHOOK_CONNECT_ADMIN_TOKEN=ADMIN, WEBHOOK_CONNECT_LOG_LEVEL="warn"),
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "cloud.log"), "w"))
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(base + "/health/live", timeout=1)
                break
            except Exception:
                time.sleep(0.1)
        out = {}
        wanted = os.environ.get("SCENARIOS", "window_open,light_mode").split(",")
        for name, window in (("window_open", True), ("light_mode", False)):
            if name not in wanted:
                continue
            out[name] = run_app(home, window, base, cloud_port)
            print(name, json.dumps(out[name], indent=1), flush=True)
        print(json.dumps(out))
    finally:
        cloud.terminate()
        cloud.wait()
        srv.shutdown()


if __name__ == "__main__":
    sys.exit(main())
