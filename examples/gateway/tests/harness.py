"""Test harness of llmfast-gateway: starts gateways and a scripted fake upstream on free loopback ports
(127.0.0.1 only), bounds every wait, and always stops what it started (context managers)."""
import contextlib
import http.client
import json
import os
import shutil
import select
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

SKIP = 77
GATEWAY = os.environ.get("LLMFAST_GATEWAY", "")


def fail(message):
    print("FAIL:", message, flush=True)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def in_ci():
    """CI is set (CI=true in .ci/run, as on most CI services); CI unset, empty, 0, false or no is a developer's machine."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def skip_or_fail(message):
    """A missing tool: skipped on a developer's machine (exit 77, SKIP_RETURN_CODE in CMake), a failure in CI."""
    if in_ci():
        fail(message + " (required in CI)")
    print("SKIP:", message, flush=True)
    sys.exit(SKIP)


class Gateway:
    def __init__(self, *args, env=None):
        self.args = [GATEWAY, "--port", "0", "--threads", "2", *args]
        self.env = dict(os.environ, **(env or {}))
        self.proc = None
        self.port = None
        self.log_path = None

    def __enter__(self):
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        check(ready, "gateway did not print its listening line within 20 s")
        line = self.proc.stdout.readline().strip()
        check(line.startswith("listening on 127.0.0.1:"), "unexpected first line: %r (stderr: %s)" % (line, self.stderr_now()))
        self.port = int(line.rsplit(":", 1)[1])
        # stderr (the access log by default) is read as it comes: a pipe nobody reads fills after ~64 KiB
        # and then blocks the gateway's next log write (a test polling /metrics can write that much).
        self.stderr_lines = []
        self.stderr_thread = threading.Thread(target=lambda: self.stderr_lines.extend(self.proc.stderr), daemon=True)
        self.stderr_thread.start()
        return self

    def stderr_text(self):
        """What the gateway wrote to stderr, once it has exited."""
        thread = getattr(self, "stderr_thread", None)
        if thread is None:
            return self.proc.stderr.read()
        thread.join(5)
        return "".join(self.stderr_lines)

    def stderr_now(self):
        if self.proc.poll() is None:
            return ""
        return self.stderr_text()

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            fail("gateway did not exit within %s s of signal %s" % (timeout, sig))

    def __exit__(self, *exc):
        code = self.proc.poll()
        if code is not None and code != 0:
            print("gateway exited with %s; stderr tail:\n%s" % (code, "\n".join(l for l in self.stderr_text().splitlines() if not l.startswith("{\"time\""))[-20000:]), flush=True)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        elif code is not None and code != 0 and exc[0] is None:
            fail("the gateway died (exit %s) during the test" % code)
        self.errors = self.stderr_text() if self.proc.stderr else ""
        return False

    @property
    def base(self):
        return "http://127.0.0.1:%d/v1" % self.port

    def request(self, method, path, body=None, headers=None, timeout=30):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = body if isinstance(body, (bytes, type(None))) else (body if isinstance(body, str) else json.dumps(body))
            conn.request(method, path, body=data, headers=headers or {"Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), resp.read()
        finally:
            conn.close()


def sse_events(raw):
    """data payloads of an SSE body."""
    out = []
    for block in raw.decode().split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data: "):
                out.append(line[6:])
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- a real redis-server (the cache's shared tier) ---------------------------------------------
def _die_with_parent():
    """preexec_fn: the child gets SIGKILL when this process dies (a killed test leaves no server behind)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class RedisServer:
    """redis-server on a free 127.0.0.1 port, no persistence (--save '' --appendonly no), its files in a
    temporary directory; always stopped on exit. kill() and start() again: an outage and a restart on
    the same port (empty: nothing persisted). A missing redis-server: skip (77) here, fail in CI."""

    def __init__(self, *extra):
        self.binary = shutil.which("redis-server") or ("/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None)
        if self.binary is None:
            skip_or_fail("redis-server is not installed (Debian: redis-server; scripts/install_deps.sh)")
        self.port = free_port()
        self.extra = list(extra)
        self.proc = None
        self.dir = None

    @property
    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def start(self, timeout=10):
        self.dir = self.dir or tempfile.mkdtemp(prefix="llmfast-redis-")
        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", self.dir, *self.extra],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while True:  # ready when it answers PING (+PONG, or -NOAUTH with requirepass)
            check(self.proc.poll() is None, "redis-server exited at start (%s)" % self.proc.returncode)
            try:
                reply = self.command("PING")
                if reply.startswith(b"+PONG") or reply.startswith(b"-NOAUTH"):
                    return self
            except OSError:
                pass
            check(time.monotonic() < deadline, "redis-server did not answer PING within %s s" % timeout)
            time.sleep(0.02)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def command(self, *args, password=None, timeout=2):
        """One RESP command (after AUTH when `password`); the raw reply bytes (enough for tests)."""
        def encode(words):
            out = b"*%d\r\n" % len(words)
            for w in words:
                w = w if isinstance(w, bytes) else str(w).encode()
                out += b"$%d\r\n%s\r\n" % (len(w), w)
            return out
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            data = (encode(["AUTH", password]) if password else b"") + encode(args)
            s.sendall(data)
            got = b""
            want = 2 if password else 1
            while got.count(b"\r\n") < want:
                part = s.recv(65536)
                if not part:
                    break
                got += part
            return got.split(b"\r\n", 1)[1] if password else got

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.kill()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        return False


# ---- a scripted fake upstream -------------------------------------------------------------------
def chunk(content=None, finish=None, model="fake"):
    delta = {} if content is None else {"content": content}
    return "data: " + json.dumps({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": model,
                                  "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                                  "x_unknown": {"kept": True}}) + "\n\n"


class FakeUpstream:
    """Answers POST /<mode>/v1/chat/completions. Modes: ok, stall, 500, err200, garbage, reset, slow,
    stallbody (streams: the head, then nothing for 5 s), stallmid (the head and one content chunk, then nothing for 5 s).
    Records request bodies and, for `slow`, when the client closed the connection."""

    def __init__(self, tls_context=None):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.tls = tls_context
        self.bodies = []
        self.closed_at = []
        self.lock = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self.serve, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping = True
        self.sock.close()
        return False

    def url(self, mode):
        return "%s://127.0.0.1:%d/%s/v1" % ("https" if self.tls else "http", self.port, mode)

    def serve(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn):
        try:
            if self.tls:
                conn = self.tls.wrap_socket(conn, server_side=True)
            conn.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                part = conn.recv(65536)
                if not part:
                    return
                data += part
            head, body = data.split(b"\r\n\r\n", 1)
            lines = head.decode().split("\r\n")
            path = lines[0].split(" ")[1]
            length = 0
            for line in lines[1:]:
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            while len(body) < length:
                body += conn.recv(65536)
            request = json.loads(body)
            with self.lock:
                self.bodies.append((path, request, dict(l.split(": ", 1) for l in lines[1:] if ": " in l)))
            mode = path.split("/")[1]
            self.answer(conn, mode, request)
        except (OSError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def send_head(self, conn, status=200, ctype="text/event-stream"):
        conn.sendall(("HTTP/1.1 %d X\r\nContent-Type: %s\r\nConnection: close\r\n\r\n" % (status, ctype)).encode())

    def answer(self, conn, mode, request):
        stream = request.get("stream", False)
        if mode == "stall":
            time.sleep(5)
            return
        if mode == "500":
            body = b'{"error":{"message":"overloaded"}}'
            conn.sendall(b"HTTP/1.1 500 X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            return
        if mode == "err200":
            self.send_head(conn)
            conn.sendall(b'data: {"error":{"message":"model crashed","type":"server_error"}}\n\n')
            return
        if mode == "garbage":
            self.send_head(conn)
            conn.sendall(b"data: this is not json\n\ndata: {\"choices\": 7}\n\n")
            return
        if not stream:
            body = json.dumps({"id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": request["model"],
                               "choices": [{"index": 0, "message": {"role": "assistant", "content": "from " + mode},
                                            "finish_reason": "stop"}],
                               "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}).encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            return
        self.send_head(conn)
        if mode == "stallbody":
            time.sleep(5)
            return
        if mode == "stallmid":
            conn.sendall(chunk("partial ").encode())
            time.sleep(5)
            return
        if mode == "reset":
            conn.sendall(chunk("partial ").encode())
            time.sleep(0.2)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            conn.close()
            return
        if mode == "slow":
            for i in range(100):
                conn.sendall(chunk("tick%d " % i).encode())
                readable, _, _ = select.select([conn], [], [], 0.1)
                if readable and not conn.recv(1):  # EOF: the gateway closed its upstream connection
                    with self.lock:
                        self.closed_at.append(time.monotonic())
                    return
            return
        conn.sendall(chunk("from ").encode())
        conn.sendall(chunk(mode).encode())
        conn.sendall(chunk(None, "stop").encode())
        if (request.get("stream_options") or {}).get("include_usage"):
            conn.sendall(("data: " + json.dumps({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1,
                                                 "model": "fake", "choices": [],
                                                 "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}) + "\n\n").encode())
        conn.sendall(b"data: [DONE]\n\n")


def vm_rss_kb(pid):
    """The resident memory of process `pid` in KiB (VmRSS of /proc/<pid>/status), 0 when it is gone."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def self_signed(tmp):
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return cert, ctx


def find_chromium():
    """Debian's chromium (/usr/bin/chromium), or another Chromium on PATH; None when there is none."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Chromium:
    """Headless Chromium with the DevTools protocol on a free loopback port (--remote-debugging-port=0;
    the port and the browser's WebSocket path are read from DevToolsActivePort in its own temporary
    profile). It runs in a process group of its own, killed as a whole on exit: the browser's renderer
    and helper processes go with it."""

    def __init__(self, binary, profile_dir, width=960, height=900):
        self.args = [binary, "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
                     "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                     "--window-size=%d,%d" % (width, height), "--user-data-dir=" + profile_dir, "about:blank"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            self.args.insert(1, "--no-sandbox")  # Chromium refuses to start as root with its sandbox
        # Its own process group escapes a kill of the test's group (CTest's timeout), so the browser
        # also gets SIGKILL if this process dies first (util-linux setpriv: prctl(PR_SET_PDEATHSIG), then
        # exec; the renderers exit when the browser is gone).
        setpriv = shutil.which("setpriv")
        if setpriv:
            self.args[:0] = [setpriv, "--pdeathsig", "KILL"]
        self.profile = profile_dir
        self.proc = None
        self.ws_url = None

    def __enter__(self):
        self.log = open(os.path.join(self.profile, "chromium.log"), "w+")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        active = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.__exit__(None, None, None)
                fail("chromium exited (%s) before opening its DevTools port:\n%s" % (self.proc.returncode, self.log_tail()))
            with contextlib.suppress(OSError, ValueError):
                with open(active) as f:
                    lines = f.read().split("\n")
                if len(lines) >= 2 and lines[0].strip().isdigit() and lines[1].startswith("/devtools/browser/"):
                    self.ws_url = "ws://127.0.0.1:%s%s" % (lines[0].strip(), lines[1].strip())
                    return self
            time.sleep(0.05)
        self.__exit__(None, None, None)
        fail("chromium wrote no DevToolsActivePort within 30 s:\n%s" % self.log_tail())

    def log_tail(self):
        self.log.flush()
        self.log.seek(0)
        return "\n".join(self.log.read().splitlines()[-30:])

    def __exit__(self, *exc):
        if self.proc is not None:
            # the group start_new_session gave it (ours only); also when the browser itself is gone,
            # for a renderer it may have left behind
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
            deadline = time.monotonic() + 5  # the renderers die with the group; wait (bounded) until they are reaped
            while time.monotonic() < deadline:
                try:
                    os.killpg(self.proc.pid, 0)
                except (ProcessLookupError, PermissionError):
                    break
                time.sleep(0.05)
        self.log.close()
        return False
