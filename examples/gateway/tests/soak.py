"""The gateway's soak and fault test (`gateway_test.py soak`, CTest gateway_soak): many concurrent clients
for a fixed time against one gateway, while one upstream is killed and restarted and another stalls.

Three roles in one file:
  soak.py upstream PORT         a fake OpenAI upstream (asyncio, stdlib only), its own process so that it
                                can really be killed (SIGKILL) and stalled (SIGSTOP)
  soak.py client ARGS           one load-generator process (asyncio on raw sockets, uvloop if present);
                                prints a JSON summary of what its clients saw
  run(Gateway, ...)             the test: two identical runs, then the checks (see docs/gateway.md)

Every request is checked: a well-formed request gets exactly one complete answer (content, finish reason,
[DONE]) or one clear error (an OpenAI error object, or a stream that ends with one error event, its
content before that a prefix of the right answer). No timing assertions: every wait has a generous bound
that only detects a hang.

LLMFAST_SOAK_SECONDS sets the length of each of the two runs (default 28 s, so about 60 s of load)."""
import asyncio
import collections
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zlib

from harness import vm_rss_kb  # noqa: E402  (this directory is on sys.path: the test's and the script's own)

HERE = os.path.abspath(__file__)

# ---- the fake upstream ---------------------------------------------------------------------------------
# Modes (the first path segment): `ok` streams max_tokens pieces 10 ms apart (or answers a chat.completion);
# `endless` streams a piece every 50 ms until the gateway closes the connection (counted as `cancelled`).
# GET /stats answers the counters. The content is a function of the last user message, so a client can
# check every answer, whichever upstream (or the cache) produced it.


def expected_pieces(text, n):
    tag = zlib.crc32(text.encode()) & 0xFFFF
    return ["%04x-%d " % (tag, i) for i in range(n)]


async def upstream_main(port):
    stats = collections.Counter()

    async def handle(reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            length = 0
            for line in lines[1:]:
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            body = await reader.readexactly(length) if length else b""
            if path == "/stats":
                data = json.dumps(stats).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                             % (len(data), data))
                await writer.drain()
                return
            request = json.loads(body)
            mode = path.split("/")[1]
            stats["requests"] += 1
            user = [m["content"] for m in request["messages"] if m.get("role") == "user"][-1]
            pieces = expected_pieces(user, request.get("max_tokens") or 8)
            if not request.get("stream"):
                await asyncio.sleep(0.01 * len(pieces))
                data = json.dumps({"id": "chatcmpl-soak", "object": "chat.completion", "created": 1, "model": request["model"],
                                   "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(pieces)}, "finish_reason": "length"}],
                                   "usage": {"prompt_tokens": 3, "completion_tokens": len(pieces), "total_tokens": 3 + len(pieces)}}).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                             % (len(data), data))
                await writer.drain()
                stats["completed"] += 1
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")

            def event(delta, finish=None):
                return ("data: " + json.dumps({"id": "chatcmpl-soak", "object": "chat.completion.chunk", "created": 1, "model": request["model"],
                                               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + "\n\n").encode()
            if mode == "endless":
                # Ends only when the gateway closes the connection (its client went away): EOF while
                # waiting, or a reset / broken pipe on a write.
                try:
                    for i in range(100000):
                        writer.write(event({"content": "%d " % i}))
                        await writer.drain()
                        try:
                            if await asyncio.wait_for(reader.read(1), 0.05) == b"":
                                break
                        except asyncio.TimeoutError:
                            pass
                except OSError:
                    pass
                stats["cancelled"] += 1
                return
            for i, piece in enumerate(pieces):
                writer.write(event({"role": "assistant", "content": piece} if i == 0 else {"content": piece}))
                await writer.drain()
                await asyncio.sleep(0.01)
            writer.write(event({}, "length"))
            if (request.get("stream_options") or {}).get("include_usage"):
                writer.write(("data: " + json.dumps({"id": "chatcmpl-soak", "object": "chat.completion.chunk", "created": 1, "model": request["model"],
                                                     "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": len(pieces),
                                                                              "total_tokens": 3 + len(pieces)}}) + "\n\n").encode())
            writer.write(b"data: [DONE]\n\n")
            await writer.drain()
            stats["completed"] += 1
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, KeyError, IndexError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, reuse_address=True, backlog=256)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


# ---- the load generator ----------------------------------------------------------------------------------
CACHED_PROMPTS = ["cached question %d" % i for i in range(12)]
SIM_LONG_TOKENS = 20000  # a sim stream that cannot end (about 13 s) before its client disconnects


class Lost(Exception):
    """The connection ended, or the answer did not parse, before one answer was complete."""


class Response:
    def __init__(self):
        self.status = 0
        self.headers = {}
        self.body = b""
        self.events = []  # SSE data payloads of a chunked event stream
        self.ended = False  # the whole body arrived (Content-Length, or the last chunk)


async def read_response(reader, stream_until=None):
    """Reads one HTTP/1.1 response. With stream_until, returns early once that predicate is true of
    the events seen so far (the client then disconnects)."""
    r = Response()
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError) as e:
        raise Lost("no response head: %r" % e)
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise Lost("bad status line %r" % lines[0])
    r.status = int(parts[1])
    for line in lines[1:]:
        if ": " in line:
            k, v = line.split(": ", 1)
            r.headers[k.lower()] = v
    try:
        if r.headers.get("transfer-encoding", "").lower() == "chunked":
            pending = b""
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                data = await reader.readexactly(size + 2)
                if data[-2:] != b"\r\n":
                    raise Lost("bad chunk framing")
                if size == 0:
                    r.ended = True
                    break
                pending += data[:-2]
                while b"\n\n" in pending:
                    block, pending = pending.split(b"\n\n", 1)
                    for line in block.decode().split("\n"):
                        if line.startswith("data: "):
                            r.events.append(line[6:])
                if stream_until is not None and stream_until(r.events):
                    return r
            if pending.strip():
                raise Lost("stream ended inside an event: %r" % pending[:100])
        else:
            r.body = await reader.readexactly(int(r.headers.get("content-length", "0")))
            r.ended = True
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError, ValueError) as e:
        raise Lost("body cut: %r (status %d, %d events)" % (e, r.status, len(r.events)))
    return r


def http_request(body, headers=None, path="/v1/chat/completions"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    head = "POST %s HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % (path, len(data))
    for k, v in (headers or {}).items():
        head += "%s: %s\r\n" % (k, v)
    return head.encode() + b"\r\n" + data


def chat(model, text, max_tokens, stream, temperature=None, usage=False):
    body = {"model": model, "messages": [{"role": "system", "content": "soak"}, {"role": "user", "content": text}], "max_tokens": max_tokens,
            "stream": stream}
    if temperature is not None:
        body["temperature"] = temperature
    if usage:
        body["stream_options"] = {"include_usage": True}
    return body


def is_error_object(data):
    try:
        err = json.loads(data)["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return isinstance(err, dict) and set(err) == {"message", "type", "param", "code"} and isinstance(err["message"], str) and err["message"]


class Client:
    """One client: requests back to back on a keep-alive connection until the end time, each checked."""

    def __init__(self, port, rng, end, sim_text, tally):
        self.port, self.rng, self.end, self.sim_text, self.t = port, rng, end, sim_text, tally
        self.reader = self.writer = None

    async def connect(self):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 20)

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    def failure(self, kind, message):
        self.t["outcomes"][kind + " FAILED"] += 1
        if len(self.t["failures"]) < 30:
            self.t["failures"].append("%s: %s" % (kind, message))

    def pick(self):
        r = self.rng.random()
        c = self.rng.choice(CACHED_PROMPTS)
        u = "fresh %d" % self.rng.randrange(1 << 30)
        n = self.rng.choice((4, 8, 12))
        # (kind, model, body, expected pieces or None for the simulated model, disconnect)
        if r < 0.16:
            return "sim cached stream", "llmfast-sim", chat("llmfast-sim", c, 8, True, 0, usage=self.rng.random() < 0.5), None, False
        if r < 0.26:
            return "sim cached", "llmfast-sim", chat("llmfast-sim", c, 8, False, 0), None, False
        if r < 0.34:
            return "sim stream", "llmfast-sim", chat("llmfast-sim", u, 8, True), None, False
        if r < 0.46:
            return "flaky stream", "m-flaky", chat("m-flaky", u, n, True, usage=self.rng.random() < 0.5), expected_pieces(u, n), False
        if r < 0.52:
            return "flaky", "m-flaky", chat("m-flaky", u, n, False), expected_pieces(u, n), False
        if r < 0.60:
            return "flaky cached stream", "m-flaky", chat("m-flaky", c, 8, True, 0), expected_pieces(c, 8), False
        if r < 0.70:
            return "stall stream", "m-stall", chat("m-stall", u, n, True), expected_pieces(u, n), False
        if r < 0.74:
            return "stall", "m-stall", chat("m-stall", u, n, False), expected_pieces(u, n), False
        if r < 0.81:
            return "disconnect upstream", "m-long", chat("m-long", u, 8, True), None, True
        if r < 0.85:
            return "disconnect sim", "llmfast-sim", chat("llmfast-sim", u, SIM_LONG_TOKENS, True), None, True
        if r < 0.87:  # goes away before the response head (stream=false: nothing is sent for ~13 s)
            return "disconnect early", "llmfast-sim", chat("llmfast-sim", u, SIM_LONG_TOKENS, False), None, True
        return "malformed", None, None, None, False

    def malformed(self):
        """(label, raw request bytes, expected status, metrics route, metrics model)"""
        cases = [
            ("bad json", http_request(b'{"model": "llmfast-sim", "messages": [', None), 400, "/v1/chat/completions", ""),
            ("no messages", http_request({"model": "llmfast-sim"}), 400, "/v1/chat/completions", ""),
            ("empty messages", http_request({"model": "m-flaky", "messages": []}), 400, "/v1/chat/completions", ""),
            ("max_tokens 0", http_request(dict(chat("m-flaky", "x", 1, True), max_tokens=0)), 400, "/v1/chat/completions", ""),
            ("bad stream", http_request(dict(chat("llmfast-sim", "x", 1, True), stream="yes")), 400, "/v1/chat/completions", ""),
            ("unknown model", http_request(chat("no-such-model", "x", 1, True)), 404, "/v1/chat/completions", "no-such-model"),
            ("garbage http", b"THIS IS NOT HTTP\r\n\r\n", 400, "other", ""),
        ]
        return self.rng.choice(cases)

    async def run(self):
        while time.monotonic() < self.end:
            kind, model, body, expect, disconnect = self.pick()
            try:
                if self.writer is None:
                    await self.connect()
                if kind == "malformed":
                    await self.one_malformed()
                else:
                    await self.one(kind, model, body, expect, disconnect)
            except Lost as e:
                self.failure(kind, "lost: %s" % e)
                self.close()
            except (OSError, asyncio.TimeoutError) as e:
                self.failure(kind, "%r" % e)
                self.close()
        self.close()

    def count(self, route, model, status):
        self.t["requests"]["%s|%s|%d" % (route, model, status)] += 1

    async def one_malformed(self):
        label, raw, status, route, model = self.malformed()
        self.writer.write(raw)
        r = await asyncio.wait_for(read_response(self.reader), 60)
        self.count(route, model, r.status)
        if r.status == status and is_error_object(r.body):
            self.t["outcomes"]["malformed: %d error" % status] += 1
        else:
            self.failure("malformed", "%s: status %d (want %d), body %r" % (label, r.status, status, r.body[:200]))
        if r.headers.get("connection", "").lower() == "close" or label == "garbage http":
            self.close()

    async def one(self, kind, model, body, expect, disconnect):
        self.writer.write(http_request(body))
        if kind == "disconnect early":
            # The request is on its way (FIN after the data); nothing was received, so the close is a
            # FIN, not a reset. The gateway counts: a cache miss (it is not cacheable: it reached the
            # cache step before the backend), a disconnect, and the request with status 499.
            await self.writer.drain()
            self.close()
            self.count("/v1/chat/completions", model, 499)
            self.t["cache"]["%s|miss" % model] += 1
            self.t["outcomes"][kind + ": disconnected"] += 1
            self.t["disconnects"][model] += 1
            return
        until = (lambda events: any('"content"' in e for e in events)) if disconnect else None
        r = await asyncio.wait_for(read_response(self.reader, until), 60)
        self.count("/v1/chat/completions", model, r.status)
        cache = r.headers.get("x-llmfast-cache")
        if cache is not None:
            self.t["cache"]["%s|%s" % (model, cache)] += 1
        if disconnect:
            self.close()
            if r.status == 200 and not r.ended:
                self.t["outcomes"][kind + ": disconnected"] += 1
                self.t["disconnects"][model] += 1
            elif r.status >= 400 and is_error_object(r.body):  # e.g. a 504: a starved upstream missed first_byte_timeout
                self.t["outcomes"]["%s: error %d" % (kind, r.status)] += 1
            else:
                self.failure(kind, "a stream that cannot end ended: status %d, %d events" % (r.status, len(r.events)))
            return
        if r.headers.get("connection", "").lower() == "close":
            self.close()
        outcome = self.verdict(kind, model, body, expect, r)
        if outcome is not None:
            self.t["outcomes"]["%s: %s" % (kind, outcome)] += 1

    def verdict(self, kind, model, body, expect, r):
        """'complete', 'error <status>', 'stream error' or None after a failure was recorded."""
        if r.status != 200:
            if is_error_object(r.body) and r.status >= 400:
                return "error %d" % r.status
            self.failure(kind, "status %d without an error object: %r" % (r.status, r.body[:200]))
            return None
        if expect is None:
            expect = self.sim_text[body["max_tokens"]]
        if not body["stream"]:
            try:
                answer = json.loads(r.body)
                text = answer["choices"][0]["message"]["content"]
                finish = answer["choices"][0]["finish_reason"]
            except (ValueError, KeyError, IndexError, TypeError):
                self.failure(kind, "bad chat.completion: %r" % r.body[:200])
                return None
            if text != "".join(expect) or finish != "length" or answer.get("object") != "chat.completion":
                self.failure(kind, "wrong answer %r (want %r), finish %r" % (text[:80], "".join(expect)[:80], finish))
                return None
            return "complete"
        text, finishes, errors, done, after_end = "", [], 0, False, 0
        for data in r.events:
            if done or errors:
                after_end += 1
            if data == "[DONE]":
                done = True
                continue
            try:
                event = json.loads(data)
            except ValueError:
                self.failure(kind, "an event is not JSON: %r" % data[:100])
                return None
            if "error" in event:
                if not is_error_object(data):
                    self.failure(kind, "bad error event %r" % data[:200])
                    return None
                errors += 1
                continue
            for choice in event.get("choices", []):
                text += choice.get("delta", {}).get("content") or ""
                if choice.get("finish_reason"):
                    finishes.append(choice["finish_reason"])
        want = "".join(expect)
        # (an upstream killed between its finish chunk and [DONE]: all the content, the finish, then the
        # gateway's error event for the missing [DONE] — still one clear error at the end)
        if errors == 1 and not done and after_end == 0 and want.startswith(text) and (not finishes or (finishes == ["length"] and text == want)):
            return "stream error"
        if errors == 0 and done and after_end == 0 and finishes == ["length"] and text == want:
            return "complete"
        self.failure(kind, "stream: text %r (want %r), finishes %s, errors %d, done %s, events after the end %d"
                     % (text[:80], want[:80], finishes, errors, done, after_end))
        return None


async def client_main(port, clients, seconds, seed, sim_text):
    tally = {"outcomes": collections.Counter(), "requests": collections.Counter(), "cache": collections.Counter(),
             "disconnects": collections.Counter(), "failures": []}
    end = time.monotonic() + seconds
    tasks = [Client(port, random.Random(seed * 1000 + i), end, sim_text, tally).run() for i in range(clients)]
    await asyncio.gather(*tasks)
    return tally


def run_client_process(argv):
    port, clients, seconds, seed = int(argv[0]), int(argv[1]), float(argv[2]), int(argv[3])
    sim_text = {int(k): v for k, v in json.loads(argv[4]).items()}
    try:
        import uvloop  # Debian python3-uvloop: a faster event loop than asyncio's own (optional)
        uvloop.install()
    except ImportError:
        pass
    tally = asyncio.run(client_main(port, clients, seconds, seed, sim_text))
    json.dump(tally, sys.stdout)


# ---- the test --------------------------------------------------------------------------------------------
def log(message):
    print("soak: " + message, flush=True)


class Upstream:
    """A fake upstream in its own process, on a fixed port so that a restart comes back at the same URL."""

    def __init__(self, name, port):
        self.name, self.port, self.proc, self.generation = name, port, None, 0
        self.err = tempfile.TemporaryFile()

    def start(self):
        # stderr to a file, not a pipe nobody reads during the run (a full pipe would stall the process)
        self.proc = subprocess.Popen([sys.executable, HERE, "upstream", str(self.port)], stdout=subprocess.PIPE, stderr=self.err,
                                     text=True, start_new_session=True)
        deadline = time.monotonic() + 30
        import select
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 1)
            if ready:
                line = self.proc.stdout.readline()
                if line.strip() == "ready":
                    self.generation += 1
                    return self
                self.err.seek(0)
                raise RuntimeError("upstream %s: %r %s" % (self.name, line, self.err.read()[-3000:]))
        raise RuntimeError("upstream %s did not start within 30 s" % self.name)

    def crashed(self):
        """A process that exited on its own (not by our SIGKILL) crashed."""
        return self.proc is not None and self.proc.poll() is not None

    def kill(self):
        self.proc.kill()
        self.proc.wait(10)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            with_suppress(lambda: self.proc.send_signal(signal.SIGCONT))
            self.proc.kill()
            self.proc.wait(10)

    def stats(self):
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", "/stats")
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def url(self, mode):
        return "http://127.0.0.1:%d/%s/v1" % (self.port, mode)


def with_suppress(fn):
    try:
        fn()
    except OSError:
        pass


def parse_metrics(text):
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def describe_fds(pid):
    """The gateway's descriptors, sockets with their TCP ports and state (for a failure message)."""
    tcp = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                tcp[cols[9]] = "local :%d remote :%d state %s" % (int(cols[1].rsplit(":", 1)[1], 16), int(cols[2].rsplit(":", 1)[1], 16), cols[3])
    out = []
    for fd in sorted(os.listdir("/proc/%d/fd" % pid), key=int):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        inode = target[8:-1] if target.startswith("socket:[") else None
        out.append("%s -> %s%s" % (fd, target, " (%s)" % tcp[inode] if inode in tcp else ""))
    return "\n  ".join(out)


def sanitized(pid):
    """The gateway was built with AddressSanitizer (its runtime is mapped)."""
    with open("/proc/%d/maps" % pid) as f:
        return "libasan" in f.read()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(path, flaky, stall, steady):
    models = {
        "m-flaky": {"upstreams": [{"url": flaky.url("ok")}, {"url": steady.url("ok")}]},
        "m-stall": {"upstreams": [{"url": stall.url("ok")}, {"url": steady.url("ok")}]},
        "m-long": {"upstreams": [{"url": steady.url("endless")}]},
    }
    # Timeouts short enough that a stalled or dead upstream is left within the run, long enough
    # (seconds) that a loaded machine does not turn a healthy upstream into a timeout.
    limits = {"connect_timeout_ms": 2000, "first_byte_timeout_ms": 2000, "read_timeout_ms": 3000, "backoff_ms": 10,
              "cooldown_failures": 3, "cooldown_ms": 1000}
    with open(path, "w") as f:
        json.dump({"models": models, "limits": limits}, f)


def metric_deltas(before, after, prefix):
    return {k: after.get(k, 0) - before.get(k, 0) for k in set(before) | set(after) if k.startswith(prefix) and after.get(k, 0) != before.get(k, 0)}


def expected_series(tally):
    """What /metrics must have counted in one run, from what the clients saw."""
    want = collections.Counter()
    for key, n in tally["requests"].items():
        route, model, status = key.split("|")
        want['llmfast_requests_total{model="%s",route="%s",status="%s"}' % (model, route, status)] += n
    for key, n in tally["cache"].items():
        model, kind = key.split("|")
        if kind == "miss":
            want['llmfast_cache_misses_total{model="%s"}' % model] += n
        else:
            want['llmfast_cache_hits_total{kind="%s",model="%s"}' % (kind, model)] += n
    want["llmfast_client_disconnects_total"] = sum(tally["disconnects"].values())
    return want


def merge(tallies):
    out = {"outcomes": collections.Counter(), "requests": collections.Counter(), "cache": collections.Counter(),
           "disconnects": collections.Counter(), "failures": []}
    for t in tallies:
        for key in ("outcomes", "requests", "cache", "disconnects"):
            out[key].update(t[key])
        out["failures"] += t["failures"]
    return out


def run(Gateway, check, tmp):
    seconds = float(os.environ.get("LLMFAST_SOAK_SECONDS", "28"))
    clients = int(os.environ.get("LLMFAST_SOAK_CLIENTS", "40"))  # per load-generator process; two processes
    steady, flaky, stall = (Upstream(name, free_port()) for name in ("steady", "flaky", "stall"))
    upstreams = [steady, flaky, stall]
    try:
        for up in upstreams:
            up.start()
        config = os.path.join(tmp, "soak.json")
        write_config(config, flaky, stall, steady)
        with Gateway("--config", config, "--sim-time-scale", "20", "--access-log", "off") as gw:
            asan = sanitized(gw.proc.pid)
            log("gateway pid %d%s; %d clients for 2 runs of %.0f s" % (gw.proc.pid, " (AddressSanitizer)" if asan else "", 2 * clients, seconds))
            # The simulated model's answer depends only on max_tokens: learn it (uncached, default temperature).
            status, _, body = gw.request("POST", "/v1/chat/completions", chat("llmfast-sim", "learn", 8, False))
            check(status == 200, "sim warm-up: %s %s" % (status, body[:200]))
            sim_text = {8: [json.loads(body)["choices"][0]["message"]["content"]]}
            for model in ("m-flaky", "m-stall"):  # every series exists before the baseline
                status, _, body = gw.request("POST", "/v1/chat/completions", chat(model, "warm", 4, False))
                check(status == 200, "%s warm-up: %s %s" % (model, status, body[:200]))
            baseline_fds = settle(lambda: fd_count(gw.proc.pid))
            log("gateway open file descriptors before the runs: %d\n  %s" % (baseline_fds, describe_fds(gw.proc.pid)))
            rss, requests = [], []
            for run_no in (1, 2):
                before = parse_metrics(gw.request("GET", "/metrics")[2].decode())
                cancelled_before = steady.stats().get("cancelled", 0)
                tally = one_run(gw, clients, seconds, run_no, sim_text, flaky, stall, check)
                check(gw.proc.poll() is None, "run %d: the gateway died (exit %s)" % (run_no, gw.proc.poll()))
                check(not steady.crashed() and not stall.crashed() and not flaky.crashed(), "run %d: a fake upstream crashed" % run_no)
                report(run_no, tally)
                requests.append(sum(tally["outcomes"].values()))
                check(not tally["failures"], "run %d: %d requests without exactly one complete answer or one clear error:\n  %s"
                      % (run_no, sum(n for k, n in tally["outcomes"].items() if k.endswith("FAILED")), "\n  ".join(tally["failures"])))
                for kind in ("sim cached stream", "sim cached", "sim stream"):  # no fault touches the simulated model
                    bad = {k: n for k, n in tally["outcomes"].items() if k.startswith(kind + ":") and not k.endswith(": complete")}
                    check(not bad, "run %d: the simulated model failed: %s" % (run_no, bad))
                for kind in ("flaky stream", "flaky", "stall stream", "stall", "flaky cached stream"):
                    check(tally["outcomes"][kind + ": complete"] > 0, "run %d: no complete answer at all for %s" % (run_no, kind))
                hits = sum(n for k, n in tally["cache"].items() if not k.endswith("|miss"))
                check(hits > 0 and tally["cache"]["llmfast-sim|miss"] > 0, "run %d: cache hits and misses both happen: %s" % (run_no, dict(tally["cache"])))
                check(sum(tally["disconnects"].values()) > 0, "run %d: clients disconnected mid-stream" % run_no)

                # The gateway settles: counters agree with the clients, gauges at 0, descriptors back, upstreams cancelled.
                want = expected_series(tally)
                want_cancelled = tally["disconnects"]["m-long"]
                state = {}

                def agreed():
                    state["fds"] = fd_count(gw.proc.pid)  # first: the scrape below is a connection of its own
                    after = parse_metrics(gw.request("GET", "/metrics")[2].decode())
                    got = metric_deltas(before, after, "llmfast_requests_total")
                    got = {k: v for k, v in got.items() if 'route="/metrics"' not in k and 'route="/health"' not in k}
                    for prefix in ("llmfast_cache_hits_total", "llmfast_cache_misses_total", "llmfast_client_disconnects_total"):
                        got.update(metric_deltas(before, after, prefix))
                    state["counters"] = (got, {k: v for k, v in want.items() if v})
                    state["gauges"] = {k: v for k, v in after.items() if k.startswith(("llmfast_requests_running", "llmfast_requests_waiting",
                                                                                       "llmfast_admission_running", "llmfast_admission_waiting")) and v}
                    state["cancelled"] = steady.stats().get("cancelled", 0) - cancelled_before
                    state["other"] = {k: after.get(k, 0) - before.get(k, 0) for k in ("llmfast_slow_clients_dropped_total", "llmfast_drain_cut_streams_total")
                                      if after.get(k, 0) != before.get(k, 0)}
                    return (state["counters"][0] == state["counters"][1] and not state["gauges"] and state["fds"] <= baseline_fds
                            and state["cancelled"] == want_cancelled and not state["other"])
                deadline = time.monotonic() + 60
                while not agreed() and time.monotonic() < deadline:
                    time.sleep(0.25)
                got, exp = state["counters"]
                diff = {k: (got.get(k, 0), exp.get(k, 0)) for k in set(got) | set(exp) if got.get(k, 0) != exp.get(k, 0)}
                check(not diff, "run %d: /metrics disagrees with the clients (series: metrics, clients):\n  %s"
                      % (run_no, "\n  ".join("%s: %s" % kv for kv in sorted(diff.items()))))
                log("run %d: /metrics agrees with the clients on %d series (requests by model and status, cache hits by kind, misses, disconnects)"
                    % (run_no, len(exp)))
                check(not state["gauges"], "run %d: gauges not back to 0: %s" % (run_no, state["gauges"]))
                check(not state["other"], "run %d: unexpected slow-client drops or drain cuts: %s" % (run_no, state["other"]))
                check(state["fds"] <= baseline_fds, "run %d: the gateway has %d open descriptors, %d before the run; upstream ports: steady %d, flaky %d, "
                      "stall %d:\n  %s" % (run_no, state["fds"], baseline_fds, steady.port, flaky.port, stall.port, describe_fds(gw.proc.pid)))
                check(state["cancelled"] == want_cancelled, "run %d: the upstream saw %d of %d disconnected streams cancelled"
                      % (run_no, state["cancelled"], want_cancelled))
                log("run %d: descriptors %d (before: %d); upstream streams cancelled on disconnect: %d of %d"
                    % (run_no, state["fds"], baseline_fds, state["cancelled"], want_cancelled))
                rss.append(vm_rss_kb(gw.proc.pid))
                log("run %d: gateway VmRSS %d kB" % (run_no, rss[-1]))
            growth = rss[1] - rss[0]
            # The tolerance: 8 MiB or 5 % of the first run's figure, whichever is larger. Identical runs
            # differ by what the allocator keeps (per-thread arenas, fragmentation: +1 MiB measured on
            # runs of ~3·10^4 requests); a leak of 300 bytes per request would add more than that. Under AddressSanitizer the quarantine holds freed memory
            # (up to 256 MiB), so resident memory says nothing there: LeakSanitizer checks at exit instead.
            tolerance = max(8 * 1024, rss[0] // 20)
            log("VmRSS after run 1: %d kB, after run 2: %d kB (%+d kB; tolerance %d kB: a leak of %d bytes per request of run 2 would exceed it%s)"
                % (rss[0], rss[1], growth, tolerance, tolerance * 1024 // max(1, requests[1]), ", not asserted under AddressSanitizer" if asan else ""))
            if not asan:
                check(growth <= tolerance, "the gateway's memory grew by %d kB from run 1 to the identical run 2 (tolerance %d kB)" % (growth, tolerance))
            code = gw.stop()
            check(code == 0, "the gateway's exit code after SIGTERM: %s%s" % (code, " (LeakSanitizer?)" if asan else ""))
    finally:
        for up in upstreams:
            up.stop()


def settle(measure, bound=10):
    """A figure once two readings 0.3 s apart agree (bounded)."""
    deadline = time.monotonic() + bound
    last = measure()
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = measure()
        if now == last:
            return now
        last = now
    return last


def one_run(gw, clients, seconds, run_no, sim_text, flaky, stall, check):
    errs = [tempfile.TemporaryFile() for _ in range(2)]  # not pipes: nobody reads them until the end
    procs = [subprocess.Popen([sys.executable, HERE, "client", str(gw.port), str(clients), str(seconds), str(run_no * 10 + i), json.dumps(sim_text)],
                              stdout=subprocess.PIPE, stderr=errs[i], text=True) for i in range(2)]
    try:
        start = time.monotonic()
        # The same faults at the same points of both runs (so that the runs stay identical).
        faults = [(0.25, "kill flaky", flaky.kill), (0.45, "restart flaky", lambda: restart(flaky)),
                  (0.55, "stall (SIGSTOP) stall", lambda: stall.signal(signal.SIGSTOP)),
                  (0.75, "resume (SIGCONT) stall", lambda: stall.signal(signal.SIGCONT))]
        for at, what, action in faults:
            delay = start + at * seconds - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            action()
            log("run %d, t=%.1f s: %s" % (run_no, time.monotonic() - start, what))
        tallies = []
        for p, err in zip(procs, errs):
            try:
                out, _ = p.communicate(timeout=seconds + 120)
            except subprocess.TimeoutExpired:
                check(False, "run %d: a load generator did not finish within %.0f s of its end" % (run_no, 120))
            err.seek(0)
            check(p.returncode == 0, "run %d: a load generator failed (%s):\n%s" % (run_no, p.returncode, err.read()[-3000:].decode(errors="replace")))
            tallies.append(json.loads(out))
        log("run %d: load over after %.1f s" % (run_no, time.monotonic() - start))
        return merge(tallies)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        if stall.proc.poll() is None:
            stall.signal(signal.SIGCONT)  # never leave it stopped, even when a check failed


def restart(upstream):
    for attempt in range(10):  # the port is fixed; a restart right after the kill may find it briefly taken
        try:
            upstream.start()
            return
        except RuntimeError:
            if attempt == 9:
                raise
            time.sleep(0.5)


def report(run_no, tally):
    total = sum(tally["outcomes"].values())
    log("run %d: %d requests; outcomes by kind:" % (run_no, total))
    for key in sorted(tally["outcomes"]):
        log("  %-48s %7d" % (key, tally["outcomes"][key]))
    log("  cache headers: %s" % ", ".join("%s %d" % kv for kv in sorted(tally["cache"].items())))
    log("  disconnects: %s" % dict(tally["disconnects"]))


if __name__ == "__main__":
    if sys.argv[1] == "upstream":
        asyncio.run(upstream_main(int(sys.argv[2])))
    elif sys.argv[1] == "client":
        run_client_process(sys.argv[2:])
