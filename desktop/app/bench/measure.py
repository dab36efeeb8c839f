#!/usr/bin/env python3
"""Memory and start-time figures of the desktop app (docs/BENCHMARKS.md, "Desktop app").

Starts a real cloud and a local HTTP target, then the app three times: with the window open; in
light mode from the start (`start_minimized`: on Linux the app executes the light image,
`webhook-connect-light`, tray and engine without WebKit, straight away); and with the window opened
then closed in light mode (on Linux the app then hands over to the light image, same pid, and
reconnects; the time from the close to the reconnection is reported). The image measured
(`/proc/<pid>/exe`) is reported as `image`. For each: time from exec to the channel being connected at the cloud, then RSS and
PSS summed over the app's process tree (WebKit web/network processes included), idle and while
forwarding 100 webhooks/s.

Run inside a display and a D-Bus session, from the repository root, after building:
  xvfb-run -a -s "-screen 0 1400x900x24" dbus-run-session -- python3 desktop/app/bench/measure.py
Environment: APP (app binary), CLOUD (cloud binary), SECONDS_LOAD (load duration, default 30),
SCENARIOS (comma list of window_open, light_mode, light_after_close). The app gets this script's
environment: export e.g. WEBKIT_DISABLE_COMPOSITING_MODE=0 or WEBHOOK_CONNECT_APP_ENV_DEFAULTS=off
to measure without the app's start-up defaults.
"""

import ctypes
import ctypes.util

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
    """(rss_kib, pss_kib, [(comm, rss, pss, pss_anon, pss_file)]) summed over the tree."""
    rss = pss = 0
    procs = []
    for pid in tree(root):
        try:
            comm = open(f"/proc/{pid}/comm").read().strip()
            v = {}
            for line in open(f"/proc/{pid}/smaps_rollup"):
                parts = line.split()
                if len(parts) == 3 and parts[2] == "kB":
                    v[parts[0].rstrip(":")] = int(parts[1])
        except OSError:
            continue
        r, p = v.get("Rss", 0), v.get("Pss", 0)
        rss += r
        pss += p
        procs.append((comm, r, p, v.get("Pss_Anon", 0), v.get("Pss_File", 0)))
    return rss, pss, procs


def others_mapping(ours, lib):
    n = 0
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) not in ours:
            try:
                if lib in open(f"/proc/{d}/maps").read():
                    n += 1
            except OSError:
                pass
    return n


def sample(root, seconds):
    xs = []
    end = time.time() + seconds
    while time.time() < end:
        xs.append(mem(root))
        time.sleep(0.5)
    rss = [x[0] for x in xs]
    pss = [x[1] for x in xs]
    try:
        maps = open(f"/proc/{root}/maps").read()
    except OSError:
        maps = ""
    return {
        # PSS divides shared pages: other processes mapping WebKit (another app instance, e.g. a
        # test run) lower our figures. RSS is not affected.
        "other_processes_mapping_webkit": others_mapping(set(tree(root)), "libwebkit2gtk"),
        # Mesa's software GL (llvmpipe) in the app process itself.
        "mesa_llvm_loaded": "libLLVM" in maps,
        "rss_avg_mib": round(sum(rss) / len(rss) / 1024, 1),
        "rss_max_mib": round(max(rss) / 1024, 1),
        "pss_avg_mib": round(sum(pss) / len(pss) / 1024, 1),
        "pss_max_mib": round(max(pss) / 1024, 1),
        # The last sample, per process: PSS, and its anonymous (heap) and file-backed parts.
        "processes": {c: {"pss_mib": round(p / 1024, 1), "pss_anon_mib": round(a / 1024, 1),
                          "pss_file_mib": round(f / 1024, 1)}
                      for c, _, p, a, f in xs[-1][2]},
    }


class XClientMessageEvent(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("serial", ctypes.c_ulong), ("send_event", ctypes.c_int),
                ("display", ctypes.c_void_p), ("window", ctypes.c_ulong),
                ("message_type", ctypes.c_ulong), ("format", ctypes.c_int),
                ("l", ctypes.c_long * 5)]


class XEvent(ctypes.Union):
    _fields_ = [("xclient", XClientMessageEvent), ("pad", ctypes.c_long * 24)]


def close_window(pid):
    """Asks the app's windows to close the way a window manager does (WM_DELETE_WINDOW)."""
    ids = subprocess.run(["xdotool", "search", "--all", "--pid", str(pid), "--name", "Webhook Connect"],
                         capture_output=True, text=True).stdout.split()
    if not ids:
        raise SystemExit("no window of the app found (xdotool search)")
    x11 = ctypes.CDLL(ctypes.util.find_library("X11"))
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XInternAtom.restype = ctypes.c_ulong
    x11.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    x11.XSendEvent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long,
                               ctypes.POINTER(XEvent)]
    x11.XFlush.argtypes = [ctypes.c_void_p]
    x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    dpy = x11.XOpenDisplay(None)
    for wid in ids:
        ev = XEvent()
        ev.xclient.type = 33  # ClientMessage
        ev.xclient.format = 32
        ev.xclient.window = int(wid)
        ev.xclient.message_type = x11.XInternAtom(dpy, b"WM_PROTOCOLS", 0)
        ev.xclient.l[0] = x11.XInternAtom(dpy, b"WM_DELETE_WINDOW", 0)
        x11.XSendEvent(dpy, int(wid), 0, 0, ctypes.byref(ev))
    x11.XFlush(dpy)
    x11.XCloseDisplay(dpy)


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


def run_app(home, window_open, base, cloud_port, close_after=False):
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
    reconnected = None
    if close_after:
        closed_at = time.time()
        close_window(app.pid)
        # Light mode on Linux: the app hands over (same pid, `--carried`) to the light image,
        # which never loads WebKit, and its channel connects again.
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with open(f"/proc/{app.pid}/cmdline", "rb") as f:
                    restarted = b"--carried" in f.read().split(b"\0")
                if restarted and admin(base, f"/channels/{CHANNEL}/stats")["connected_clients"] >= 1:
                    reconnected = time.time() - closed_at
                    break
            except Exception:
                pass
            time.sleep(0.05)
        deadline = time.time() + 15
        while time.time() < deadline and any(c.startswith("WebKit") for c, *_ in mem(app.pid)[2]):
            time.sleep(0.2)
        left = [c for c, *_ in mem(app.pid)[2]]
        if reconnected is None or any(c.startswith("WebKit") for c in left) or app.poll() is not None:
            app.kill()
            raise SystemExit(f"closing the window did not restart the app without WebKit: {left}")
        time.sleep(10)  # settle after the close
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
    image = os.path.basename(os.readlink(f"/proc/{app.pid}/exe"))
    app.send_signal(signal.SIGTERM)
    try:
        app.wait(10)
    except subprocess.TimeoutExpired:
        app.kill()
        app.wait()
    return {"image": image, "start_to_connected_s": connected, "close_to_reconnected_s": reconnected,
            "idle": idle, "load": load,
            "sent": result["sent"], "delivered": delivered}


def main():
    for p in (APP, CLOUD):
        if not os.path.exists(p):
            raise SystemExit(f"missing {p}: cargo build -p webhook-connect-app -p webhook-connect-light"
                             " -p connect-cloud --bins")
    if not os.path.exists(os.path.join(os.path.dirname(APP), "webhook-connect-light")):
        print("note: no webhook-connect-light next to the app: light mode restarts the app instead",
              file=sys.stderr)
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
        wanted = os.environ.get("SCENARIOS", "window_open,light_mode,light_after_close").split(",")
        for name, window, close in (("window_open", True, False), ("light_mode", False, False),
                                    ("light_after_close", True, True)):
            if name not in wanted:
                continue
            out[name] = run_app(home, window, base, cloud_port, close)
            print(name, json.dumps(out[name], indent=1), flush=True)
        print(json.dumps(out))
    finally:
        cloud.terminate()
        cloud.wait()
        srv.shutdown()


if __name__ == "__main__":
    sys.exit(main())
