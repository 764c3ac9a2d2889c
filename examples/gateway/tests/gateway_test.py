"""llmfast-gateway end to end: `gateway_test.py GROUP` (CTest runs each group as one test, label gateway).
Every gateway and fake upstream runs on 127.0.0.1 on a free port and is stopped even when a check fails."""
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Chromium, Gateway, FakeUpstream, RedisServer, check, fail, find_chromium, free_port, self_signed,  # noqa: E402
                     skip_or_fail, sse_events, vm_rss_kb)

SIM = ["--sim-time-scale", "50"]
CHAT = {"model": "llmfast-sim", "messages": [{"role": "user", "content": "hello there"}]}


def curl_stream(port, body, extra=()):
    if not shutil.which("curl"):
        skip_or_fail("curl is not installed")
    out = subprocess.run(["curl", "-sS", "-N", "--max-time", "20", *extra, "-H", "Content-Type: application/json",
                          "-d", json.dumps(body), "http://127.0.0.1:%d/v1/chat/completions" % port],
                         capture_output=True, timeout=30)
    check(out.returncode == 0, "curl failed: %s" % out.stderr)
    return out.stdout


def test_http():
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "access.log")
        with Gateway(*SIM, "--access-log", log) as gw:
            status, headers, body = gw.request("GET", "/health")
            check(status == 200 and json.loads(body)["status"] == "ok", "health: %s %s" % (status, body))
            status, _, body = gw.request("GET", "/v1/models")
            ids = [m["id"] for m in json.loads(body)["data"]]
            check("llmfast-sim" in ids, "models: %s" % ids)
            # streaming with include_usage, through curl -N
            raw = curl_stream(gw.port, dict(CHAT, stream=True, max_tokens=5, stream_options={"include_usage": True}))
            events = sse_events(raw)
            check(events[-1] == "[DONE]", "stream must end with [DONE]: %s" % events[-3:])
            chunks = [json.loads(e) for e in events[:-1]]
            check(all(c["object"] == "chat.completion.chunk" for c in chunks), "chunk objects")
            check(chunks[0]["choices"][0]["delta"].get("role") == "assistant", "first chunk has the role")
            text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
            check(text == "Large language models spend most", "content: %r" % text)
            check(chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5, "usage chunk: %s" % chunks[-1])
            check(chunks[-2]["choices"][0]["finish_reason"] == "length", "finish chunk")
            # without include_usage: no usage chunk
            events = sse_events(curl_stream(gw.port, dict(CHAT, stream=True, max_tokens=2)))
            check(all("usage" not in json.loads(e) for e in events[:-1]), "no usage chunk unless asked")
            # non-streaming
            status, headers, body = gw.request("POST", "/v1/chat/completions", CHAT, {"Content-Type": "application/json", "x-request-id": "req-42"})
            answer = json.loads(body)
            check(status == 200 and answer["object"] == "chat.completion", "non-stream: %s" % body[:200])
            check(answer["usage"]["total_tokens"] == answer["usage"]["prompt_tokens"] + answer["usage"]["completion_tokens"], "usage sums")
            check(headers.get("x-request-id") == "req-42", "x-request-id echoed: %s" % headers)
            status, headers, _ = gw.request("GET", "/health")
            check(len(headers.get("x-request-id", "")) == 32, "x-request-id generated")
            # embeddings (float)
            status, _, body = gw.request("POST", "/v1/embeddings", {"model": "llmfast-hashing", "input": ["a cat", "a dog"]})
            data = json.loads(body)["data"]
            check(status == 200 and len(data) == 2 and len(data[0]["embedding"]) == 384, "embeddings")
            # keep-alive: two requests on one connection
            import http.client
            conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
            for _ in range(2):
                conn.request("GET", "/health")
                r = conn.getresponse()
                check(r.status == 200, "keep-alive request")
                r.read()
            conn.close()
        with open(log) as f:
            lines = [json.loads(line) for line in f]
        check(any(l["request_id"] == "req-42" and l["status"] == 200 for l in lines), "access log has the request id")
        check(all({"method", "path", "status", "duration_ms"} <= set(l) for l in lines), "access log fields")


def expect_error(gw, method, path, body, status, param=None, headers=None, raw=False):
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    got, hdrs, data = gw.request(method, path, body if not raw else body, h)
    check(got == status, "%s %s: status %s, want %s (%s)" % (method, path, got, status, data[:200]))
    err = json.loads(data)["error"]
    check(set(err) == {"message", "type", "param", "code"}, "error object fields: %s" % err)
    if param is not None:
        check(err["param"] == param, "param %r, want %r (%s)" % (err["param"], param, err["message"]))
    return err, hdrs


def test_errors():
    with tempfile.TemporaryDirectory() as tmp:
        keys = os.path.join(tmp, "keys")
        with open(keys, "w") as f:
            f.write("team-a:sk-alpha\n# comment\nteam-b:sk-beta\n")
        with Gateway(*SIM, "--api-keys-file", keys, "--max-body-bytes", "4096", "--request-read-timeout-ms", "1000") as gw:
            auth = {"Authorization": "Bearer sk-beta"}
            expect_error(gw, "POST", "/v1/chat/completions", CHAT, 401)
            expect_error(gw, "POST", "/v1/chat/completions", CHAT, 401, headers={"Authorization": "Bearer sk-wrong"})
            check(gw.request("POST", "/v1/chat/completions", CHAT, dict(auth, **{"Content-Type": "application/json"}))[0] == 200, "valid key")
            check(gw.request("GET", "/health", headers={})[0] == 200, "health needs no key")
            expect_error(gw, "POST", "/v1/chat/completions", b"{not json", 400, headers=auth, raw=True)
            expect_error(gw, "POST", "/v1/chat/completions", b"[1,2]", 400, headers=auth, raw=True)
            expect_error(gw, "POST", "/v1/chat/completions", {"messages": CHAT["messages"]}, 400, "model", auth)
            expect_error(gw, "POST", "/v1/chat/completions", {"model": "llmfast-sim"}, 400, "messages", auth)
            expect_error(gw, "POST", "/v1/chat/completions", dict(CHAT, messages=[]), 400, "messages", auth)
            expect_error(gw, "POST", "/v1/chat/completions", dict(CHAT, messages=[{"role": "user"}]), 400, "messages[0].content", auth)
            expect_error(gw, "POST", "/v1/chat/completions", dict(CHAT, messages=[{"role": 5, "content": "x"}]), 400, "messages[0].role", auth)
            expect_error(gw, "POST", "/v1/chat/completions", dict(CHAT, max_tokens=0), 400, "max_tokens", auth)
            expect_error(gw, "POST", "/v1/chat/completions", dict(CHAT, max_tokens=10**9), 400, "max_tokens", auth)
            expect_error(gw, "POST", "/v1/chat/completions", dict(CHAT, temperature=7), 400, "temperature", auth)
            expect_error(gw, "POST", "/v1/chat/completions", dict(CHAT, stream="yes"), 400, "stream", auth)
            expect_error(gw, "POST", "/v1/chat/completions", dict(CHAT, tools=[{"type": "function"}]), 400, "tools", auth)
            deep = "[" * 200 + "]" * 200
            expect_error(gw, "POST", "/v1/chat/completions", ('{"model":"x","messages":%s}' % deep).encode(), 400, headers=auth, raw=True)
            expect_error(gw, "POST", "/v1/embeddings", {"model": "llmfast-hashing"}, 400, "input", auth)
            expect_error(gw, "POST", "/v1/embeddings", {"model": "llmfast-hashing", "input": [1, 2]}, 400, "input[0]", auth)
            expect_error(gw, "POST", "/v1/chat/completions", dict(CHAT, model="no-such-model"), 404, headers=auth)
            expect_error(gw, "GET", "/v1/nothing", None, 404, headers=auth)
            _, hdrs = expect_error(gw, "GET", "/v1/chat/completions", None, 405, headers=auth)
            check(hdrs.get("allow") == "POST", "405 names the allowed method")
            expect_error(gw, "POST", "/v1/chat/completions", dict(CHAT, pad="x" * 5000), 413, headers=auth)
            expect_error(gw, "GET", "/health", None, 431, headers={"X-Big": "y" * 20000})
            # a slow client (one byte at a time) is dropped at the request-read deadline
            s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
            start = time.monotonic()
            closed = False
            for b in b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" * 10:
                try:
                    s.send(bytes([b]))
                except OSError:
                    closed = True
                    break
                time.sleep(0.05)
                if time.monotonic() - start > 5:
                    break
            s.settimeout(3)
            try:
                closed = closed or s.recv(100) == b""
            except OSError:
                closed = True
            s.close()
            check(closed and time.monotonic() - start < 5, "slow client dropped within the request-read timeout")


def check_metrics_text(text):
    series = set()
    buckets = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, value = line.rsplit(" ", 1)
        check(name_labels not in series, "duplicate series: %s" % name_labels)
        series.add(name_labels)
        float(value)
        m = re.match(r'^(\w+)_bucket\{(.*),le="([^"]+)"\}$', name_labels)
        if m:
            buckets.setdefault((m.group(1), m.group(2)), []).append((m.group(3), float(value)))
    check(buckets, "no histogram buckets")
    for (name, labels), items in buckets.items():
        check(items[-1][0] == "+Inf", "%s{%s}: no +Inf bucket" % (name, labels))
        values = [v for _, v in items]
        check(values == sorted(values), "%s{%s}: buckets not monotonic" % (name, labels))
        bounds = [float(le) for le, _ in items[:-1]]
        check(bounds == sorted(bounds), "%s: bucket bounds not increasing" % name)
        count_line = "%s_count{%s}" % (name, labels)
        check(count_line in series, "%s missing" % count_line)
    for needed in ("llmfast_time_to_first_token_seconds", "llmfast_inter_token_latency_seconds", "llmfast_e2e_request_latency_seconds",
                   "llmfast_queue_time_seconds", "llmfast_requests_total", "llmfast_requests_running", "llmfast_requests_waiting",
                   "llmfast_upstream_attempts_total", "llmfast_upstream_failovers_total"):
        check(("# TYPE " + needed) in text, "metric %s missing" % needed)


def test_metrics():
    with Gateway(*SIM) as gw:
        curl_stream(gw.port, dict(CHAT, stream=True, max_tokens=4))
        gw.request("POST", "/v1/chat/completions", CHAT)
        gw.request("POST", "/v1/chat/completions", b"{")
        # a request is counted just after its last byte went out: poll, bounded
        deadline = time.monotonic() + 5
        while True:
            status, headers, body = gw.request("GET", "/metrics")
            text = body.decode()
            if ('status="400"' in text and 'route="/v1/chat/completions",status="200"} 2' in text) or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        check(status == 200 and headers["content-type"].startswith("text/plain"), "metrics content type")
        check_metrics_text(text)
        check('llmfast_requests_total{model="llmfast-sim",route="/v1/chat/completions",status="200"} 2' in text, "request counter:\n" + text[-1500:])
        check(re.search(r'llmfast_time_to_first_token_seconds_count\{model="llmfast-sim"\} 1\b', text), "one TTFT observation (the stream)")
        promtool = shutil.which("promtool")
        if not promtool:
            skip_or_fail("promtool is not installed (Debian package prometheus)")
        out = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=30)
        check(out.returncode == 0, "promtool check metrics: %s %s" % (out.stdout, out.stderr))


def test_drain():
    with Gateway("--sim-time-scale", "10", "--drain-grace-ms", "5000") as gw:
        result = {}

        def stream():
            result["raw"] = curl_stream(gw.port, dict(CHAT, stream=True, max_tokens=20))

        t = threading.Thread(target=stream)
        t.start()
        time.sleep(0.3)  # the stream is running (20 tokens x 1.3 ms x ... at scale 10: ~0.3 s)
        gw.proc.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        refused = False
        try:
            socket.create_connection(("127.0.0.1", gw.port), timeout=2).close()
        except OSError:
            refused = True
        t.join(20)
        code = gw.stop(timeout=15)
        check(code == 0, "exit code after SIGTERM: %s" % code)
        check(refused, "new connections are refused while draining")
        events = sse_events(result.get("raw", b""))
        check(events and events[-1] == "[DONE]", "the in-flight stream finished: %s" % events[-2:])


def upstream_config(tmp, fake, tls_fake=None, ca=None):
    closed = free_port()  # nothing listens there: connection refused
    models = {
        "m-ok": {"upstreams": [{"url": fake.url("ok"), "model": "renamed-upstream-model"}]},
        "m-refuse": {"upstreams": [{"url": "http://127.0.0.1:%d/v1" % closed}, {"url": fake.url("ok")}]},
        "m-stall": {"upstreams": [{"url": fake.url("stall")}, {"url": fake.url("ok")}]},
        "m-500": {"upstreams": [{"url": fake.url("500")}, {"url": fake.url("ok")}]},
        "m-err200": {"upstreams": [{"url": fake.url("err200")}, {"url": fake.url("ok")}]},
        "m-garbage": {"upstreams": [{"url": fake.url("garbage")}, {"url": fake.url("ok")}]},
        "m-stallbody": {"upstreams": [{"url": fake.url("stallbody")}, {"url": fake.url("ok")}]},
        "m-reset": {"upstreams": [{"url": fake.url("reset")}]},
        "m-slow": {"upstreams": [{"url": fake.url("slow")}]},
        "m-allbad": {"upstreams": [{"url": fake.url("500")}, {"url": "http://127.0.0.1:%d/v1" % closed}]},
    }
    if tls_fake:
        models["m-tls"] = {"upstreams": [{"url": tls_fake.url("ok"), "ca_file": ca}]}
        models["m-tls-untrusted"] = {"upstreams": [{"url": tls_fake.url("ok")}]}
    path = os.path.join(tmp, "gateway.json")
    with open(path, "w") as f:
        json.dump({"models": models, "limits": {"first_byte_timeout_ms": 500, "backoff_ms": 10, "cooldown_failures": 100}}, f)
    return path


def stream_text(raw):
    events = sse_events(raw)
    text = ""
    errors = []
    for e in events:
        if e == "[DONE]":
            continue
        obj = json.loads(e)
        if "error" in obj:
            errors.append(obj["error"])
        for c in obj.get("choices", []):
            text += c.get("delta", {}).get("content") or ""
    return text, errors, events


def test_upstream():
    with tempfile.TemporaryDirectory() as tmp, FakeUpstream() as fake:
        with Gateway("--config", upstream_config(tmp, fake)) as gw:
            body = dict(CHAT, model="m-ok", stream=True, logprobs=False, tools=[{"type": "function", "function": {"name": "f"}}],
                        stream_options={"include_usage": True})
            raw = curl_stream(gw.port, body)
            text, errors, events = stream_text(raw)
            check(text == "from ok" and not errors and events[-1] == "[DONE]", "pass-through stream: %r %s" % (text, errors))
            check(all('"x_unknown": {"kept": true}' in e for e in events[:3]), "upstream chunks forwarded byte for byte")
            path, sent, headers = fake.bodies[-1]
            check(sent["model"] == "renamed-upstream-model", "upstream model name: %s" % sent["model"])
            check(sent["tools"] == body["tools"] and sent["logprobs"] is False, "unknown fields forwarded unchanged")
            check(json.loads(events[-2])["usage"]["total_tokens"] == 5, "usage chunk passed through")
            status, _, data = gw.request("POST", "/v1/chat/completions", dict(CHAT, model="m-ok"))
            check(status == 200 and json.loads(data)["choices"][0]["message"]["content"] == "from ok", "non-stream pass-through")
            for model in ("m-refuse", "m-stall", "m-500", "m-err200", "m-garbage"):
                start = time.monotonic()
                text, errors, _ = stream_text(curl_stream(gw.port, dict(CHAT, model=model, stream=True)))
                check(text == "from ok" and not errors, "%s: failover to the next upstream: %r %s" % (model, text, errors))
                check(time.monotonic() - start < 5, "%s: failover took too long" % model)
                status, _, data = gw.request("POST", "/v1/chat/completions", dict(CHAT, model=model))
                check(status == 200 and b"from ok" in data, "%s non-stream failover: %s %s" % (model, status, data[:200]))
            # the head, then silence: first_byte_timeout bounds the body's first read too (failover)
            text, errors, _ = stream_text(curl_stream(gw.port, dict(CHAT, model="m-stallbody", stream=True)))
            check(text == "from ok" and not errors, "m-stallbody: failover to the next upstream: %r %s" % (text, errors))
            status, _, metrics = gw.request("GET", "/metrics")
            check(re.search(rb'llmfast_upstream_attempts_total\{model="m-stallbody",upstream="[^"]*",outcome="timeout"\} 1', metrics),
                  "m-stallbody: the first upstream timed out (not its EOF after 5 s)")
            # reset after content: the stream ends with an error event, not silently
            text, errors, events = stream_text(curl_stream(gw.port, dict(CHAT, model="m-reset", stream=True)))
            check(text == "partial " and errors and errors[0]["type"] == "upstream_error", "reset mid-stream -> error event: %s" % events)
            # every upstream fails: 502 with an error object
            err, _ = expect_error(gw, "POST", "/v1/chat/completions", dict(CHAT, model="m-allbad", stream=True), 502)
            check("no upstream could answer" in err["message"], err["message"])
            status, _, metrics = gw.request("GET", "/metrics")
            check(re.search(rb'llmfast_upstream_failovers_total\{model="m-500"\} [1-9]', metrics), "failovers counted")
            check(b'outcome="failed"' in metrics and b'outcome="timeout"' in metrics, "attempt outcomes counted")
        # read_timeout between two chunks (after content): the stream ends with an error event when
        # the upstream goes quiet (the upstream itself would close after 5 s: a different error)
        path = os.path.join(tmp, "read_timeout.json")
        with open(path, "w") as f:
            json.dump({"models": {"m-stallmid": {"upstreams": [{"url": fake.url("stallmid")}]}}, "limits": {"read_timeout_ms": 300}}, f)
        with Gateway("--config", path) as gw:
            text, errors, events = stream_text(curl_stream(gw.port, dict(CHAT, model="m-stallmid", stream=True)))
            check(text == "partial " and errors and errors[0]["type"] == "upstream_error" and "timeout" in errors[0]["message"],
                  "read_timeout after content -> an error event naming the timeout (not the upstream's EOF): %s" % events)


def test_disconnect():
    with tempfile.TemporaryDirectory() as tmp, FakeUpstream() as fake:
        with Gateway("--config", upstream_config(tmp, fake)) as gw:
            s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
            body = json.dumps(dict(CHAT, model="m-slow", stream=True)).encode()
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            got = b""
            while got.count(b"tick") < 3:
                part = s.recv(65536)
                check(part, "stream ended early")
                got += part
            s.close()
            closed = time.monotonic()
            deadline = closed + 5
            while not fake.closed_at and time.monotonic() < deadline:
                time.sleep(0.02)
            check(fake.closed_at, "the upstream never saw the gateway close its connection")
            delay = fake.closed_at[0] - closed
            check(delay < 1.0, "the upstream saw the close after %.3f s" % delay)
            print("upstream saw the close %.1f ms after the client went away" % (delay * 1000))
            # the simulated backend: a disconnect mid-stream is counted, the gateway keeps serving
            s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
            body = json.dumps(dict(CHAT, stream=True, max_tokens=1000)).encode()
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            s.recv(100)
            s.close()
            deadline = time.monotonic() + 5
            while True:
                status, _, metrics = gw.request("GET", "/metrics")
                if re.search(rb"llmfast_client_disconnects_total [2-9]", metrics) or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            check(re.search(rb"llmfast_client_disconnects_total [2-9]", metrics), "disconnects counted: %s" % metrics[-300:])
            # gone before the response head (stream=false, ~13 s in real time): a disconnect, and the
            # request counted with status 499, never with a status 0 that no HTTP client could see
            s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
            body = json.dumps(dict(CHAT, max_tokens=1000)).encode()
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            s.close()
            metrics = wait_metric(gw, rb'llmfast_requests_total\{model="llmfast-sim",route="/v1/chat/completions",status="499"\} 1')
            check(re.search(rb'llmfast_requests_total\{model="llmfast-sim",route="/v1/chat/completions",status="499"\} 1', metrics),
                  "a request whose client left before the head has status 499: %s" % metrics[-600:])
            check(re.search(rb"llmfast_client_disconnects_total 3", metrics) and b'status="0"' not in metrics, "counted once, no status 0")
            # two requests in one write, then the client's end: the watcher of the first reads the second
            # and the EOF; the second is still taken and counted (it was dropped without a trace before)
            one = json.dumps(dict(CHAT, max_tokens=5)).encode()
            req = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(one), one)
            s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
            s.sendall(req + req)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(10)
            with contextlib.suppress(OSError):
                while s.recv(65536):
                    pass
            s.close()
            pattern = rb'llmfast_requests_total\{model="llmfast-sim",route="/v1/chat/completions",status="499"\} 3'
            metrics = wait_metric(gw, pattern)
            check(re.search(pattern, metrics) and re.search(rb"llmfast_client_disconnects_total 5", metrics),
                  "both requests of a client that closed are counted as disconnects: %s" % metrics[-900:])


def test_tls():
    if not shutil.which("openssl"):
        skip_or_fail("openssl is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        cert, ctx = self_signed(tmp)
        with FakeUpstream() as fake, FakeUpstream(tls_context=ctx) as tls_fake:
            with Gateway("--config", upstream_config(tmp, fake, tls_fake, cert)) as gw:
                text, errors, _ = stream_text(curl_stream(gw.port, dict(CHAT, model="m-tls", stream=True)))
                check(text == "from ok" and not errors, "https upstream: %r %s" % (text, errors))
                status, _, data = gw.request("POST", "/v1/chat/completions", dict(CHAT, model="m-tls"))
                check(status == 200 and b"from ok" in data, "https non-stream")
                err, _ = expect_error(gw, "POST", "/v1/chat/completions", dict(CHAT, model="m-tls-untrusted"), 502)
                check("TLS" in err["message"] or "certificate" in err["message"], "untrusted certificate refused: %s" % err["message"])


def test_chain():
    with Gateway(*SIM) as inner:
        with Gateway("--upstream", inner.base, "--sim-model", "outer-only") as outer:
            direct = stream_text(curl_stream(inner.port, dict(CHAT, stream=True, max_tokens=6, stream_options={"include_usage": True})))
            chained = stream_text(curl_stream(outer.port, dict(CHAT, stream=True, max_tokens=6, stream_options={"include_usage": True})))
            check(direct[0] == chained[0] and not chained[1], "chained stream text: %r vs %r" % (direct[0], chained[0]))
            check(json.loads(chained[2][-2])["usage"]["completion_tokens"] == 6, "usage through the chain")
            check(len(direct[2]) == len(chained[2]), "same chunk boundaries through the chain")
            status, _, data = outer.request("POST", "/v1/chat/completions", CHAT)
            check(status == 200 and json.loads(data)["object"] == "chat.completion", "chained non-stream")
            err, _ = expect_error(outer, "POST", "/v1/chat/completions", dict(CHAT, tools=[{"type": "function"}]), 400, "tools")


def test_openai():
    here = os.path.dirname(os.path.abspath(__file__))
    modules = os.path.join(os.environ.get("LLMFAST_SOURCE_DIR", os.path.join(here, "../../..")), ".cache/npm-gateway/node_modules")
    if not shutil.which("node") or not os.path.isdir(os.path.join(modules, "openai")):
        skip_or_fail("node or the openai npm package is missing (bash .ci/steps.d/22-gateway-npm.sh)")
    with Gateway(*SIM) as gw:
        out = subprocess.run(["node", os.path.join(here, "openai_client.mjs"), modules, gw.base], capture_output=True, text=True, timeout=120)
        print(out.stdout)
        check(out.returncode == 0, "openai client test failed:\n%s\n%s" % (out.stdout, out.stderr))



# ---- admission control ---------------------------------------------------------------------------
def post_chat(gw, body, headers=None, timeout=30):
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    return gw.request("POST", "/v1/chat/completions", body, h, timeout=timeout)


def in_thread(fn, *args, **kwargs):
    result = {}

    def run():
        try:
            result["value"] = fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - reported by the caller's check
            result["error"] = e
        result["done"] = time.monotonic()

    t = threading.Thread(target=run)
    t.start()
    return t, result


def wait_metric(gw, pattern, timeout=5):
    deadline = time.monotonic() + timeout
    while True:
        _, _, metrics = gw.request("GET", "/metrics")
        if re.search(pattern, metrics) or time.monotonic() > deadline:
            return metrics
        time.sleep(0.01)


def test_admission():
    # One running slot (the simulated model in real time: 30 ms + 13 ms a token), a queue of one.
    long_req = dict(CHAT, max_tokens=40)  # ~0.55 s
    with Gateway("--max-running", "1", "--max-queue", "1") as gw:
        ta, ra = in_thread(post_chat, gw, long_req)
        wait_metric(gw, rb"llmfast_admission_running 1")
        tb, rb_ = in_thread(post_chat, gw, dict(CHAT, max_tokens=2))
        wait_metric(gw, rb"llmfast_admission_waiting 1")
        status, headers, body = post_chat(gw, dict(CHAT, max_tokens=2))
        check(status == 429, "queue overflow: %s %s" % (status, body))
        check(json.loads(body)["error"]["code"] == "queue_full", "queue_full code: %s" % body)
        check(headers.get("retry-after", "").isdigit() and int(headers["retry-after"]) >= 1, "Retry-After: %s" % headers)
        ta.join(20)
        tb.join(20)
        check(ra["value"][0] == 200 and rb_["value"][0] == 200, "the running and the queued request complete: %s %s" % (ra, rb_))

        # a deadline that passes while queued: 504, promptly
        ta, ra = in_thread(post_chat, gw, long_req)
        wait_metric(gw, rb"llmfast_admission_running 1")
        started = time.monotonic()
        status, _, body = post_chat(gw, dict(CHAT, max_tokens=2), {"x-llmfast-deadline-ms": "100"})
        took = time.monotonic() - started
        check(status == 504 and json.loads(body)["error"]["code"] == "deadline_exceeded", "deadline in queue: %s %s" % (status, body))
        check(took < 0.45, "the 504 came after %.3f s (deadline 0.1 s, the slot was busy ~0.5 s)" % took)
        ta.join(20)
        # bad headers name the header
        for header, value in (("x-llmfast-priority", "high"), ("x-llmfast-priority", "99"), ("x-llmfast-deadline-ms", "-5")):
            status, _, body = post_chat(gw, CHAT, {header: value})
            check(status == 400 and json.loads(body)["error"]["param"] == header, "bad %s: %s %s" % (header, status, body))
        metrics = wait_metric(gw, rb"x")
        check(re.search(rb'llmfast_rejections_total\{reason="queue_full"\} 1', metrics), "queue_full counted")
        check(re.search(rb'llmfast_rejections_total\{reason="deadline_in_queue"\} 1', metrics), "deadline_in_queue counted")
        check(re.search(rb'llmfast_queue_time_seconds_count\{model="llmfast-sim"\} [1-9]', metrics), "queue time observed")
        check(re.search(rb'llmfast_requests_waiting\{model="llmfast-sim"\} 0', metrics), "waiting gauge back to 0")

    # priorities: higher first, whatever the arrival order
    with Gateway("--max-running", "1", "--max-queue", "8") as gw:
        ta, ra = in_thread(post_chat, gw, long_req)
        wait_metric(gw, rb"llmfast_admission_running 1")
        order = []
        lock = threading.Lock()

        def tagged(tag, priority):
            status, _, _ = post_chat(gw, dict(CHAT, max_tokens=3), {"x-llmfast-priority": str(priority)})
            with lock:
                order.append((tag, status))

        threads = []
        for tag, priority in (("low", 0), ("mid", 3), ("high", 7)):
            t = threading.Thread(target=tagged, args=(tag, priority))
            t.start()
            threads.append(t)
            wait_metric(gw, b"llmfast_admission_waiting %d" % len(threads))
        for t in threads + [ta]:
            t.join(20)
        check([tag for tag, _ in order] == ["high", "mid", "low"], "priority order: %s" % order)
        check(all(status == 200 for _, status in order), "all answered: %s" % order)

    # per-tenant limits: requests per minute (alice), prompt tokens per minute (everyone else)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "gateway.json")
        with open(path, "w") as f:
            json.dump({"tenants": {"alice": {"requests_per_minute": 2}, "*": {"tokens_per_minute": 60}}}, f)
        with Gateway(*SIM, "--config", path, env={"LLMFAST_API_KEYS": "alice:key-a,bob:key-b"}) as gw:
            alice = {"Authorization": "Bearer key-a"}
            bob = {"Authorization": "Bearer key-b"}
            for _ in range(2):
                status, _, body = post_chat(gw, CHAT, alice)
                check(status == 200, "alice within her limit: %s %s" % (status, body))
            status, headers, body = post_chat(gw, CHAT, alice)
            error = json.loads(body)["error"]
            check(status == 429 and error["code"] == "rate_limit_exceeded" and error["type"] == "requests", "alice over: %s %s" % (status, body))
            check(headers.get("retry-after", "").isdigit(), "tenant 429 has Retry-After: %s" % headers)
            status, _, body = post_chat(gw, CHAT, bob)
            check(status == 200, "bob is not limited by alice's use: %s %s" % (status, body))
            long_prompt = dict(CHAT, messages=[{"role": "user", "content": "word " * 200}])
            status, _, body = post_chat(gw, long_prompt, bob)
            error = json.loads(body)["error"]
            check(status == 429 and error["type"] == "tokens", "bob over his tokens per minute: %s %s" % (status, body))
            metrics = wait_metric(gw, rb"x")
            check(re.search(rb'llmfast_rejections_total\{reason="tenant_requests"\} 1', metrics), "tenant_requests counted")
            check(re.search(rb'llmfast_rejections_total\{reason="tenant_tokens"\} 1', metrics), "tenant_tokens counted")


# ---- the prompt on a miss: fit, compress, count ---------------------------------------------------
def byte_rank_file(tmp):
    """A tiktoken-format rank file of cl100k_base's size (100,256 ranks) whose only tokens that text can
    reach are the 256 single bytes: the others are 3-byte tokens with no 2-byte token to merge through,
    so every byte is one token and exact counts are easy to predict."""
    import base64
    path = os.path.join(tmp, "bytes.tiktoken")
    with open(path, "w") as f:
        for b in range(256):
            f.write("%s %d\n" % (base64.b64encode(bytes([b])).decode(), b))
        for i in range(100256 - 256):
            token = bytes([0x80 + (i >> 14) % 64, 0x80 + (i >> 7) % 128, i % 128 + 0x80])
            f.write("%s %d\n" % (base64.b64encode(token).decode(), 256 + i))
    return path


def test_prompt():
    with tempfile.TemporaryDirectory() as tmp, FakeUpstream() as fake:
        ranks = byte_rank_file(tmp)
        path = os.path.join(tmp, "gateway.json")
        with open(path, "w") as f:
            json.dump({"models": {
                "fit": {"upstreams": [{"url": fake.url("ok")}], "context_window": 400,
                        "compression": {"rules": [{"pattern": "PLEASE KINDLY", "replacement": "pls"},
                                                  {"pattern": "in order to", "replacement": "to", "ignore_case": True, "whole_word": True}]}},
                "exact": {"upstreams": [{"url": fake.url("ok")}], "rank_file": ranks},
                "sim-exact": {"backend": "simulated", "rank_file": ranks, "context_window": 64},
            }}, f)
        with Gateway(*SIM, "--config", path) as gw:
            # a long history is fitted: system kept, oldest turns dropped, the newest turn kept whole
            history = [{"role": "system", "content": "You are terse."}]
            for i in range(40):
                history.append({"role": "user", "content": "question %d: %s" % (i, "lorem ipsum dolor " * 8)})
                history.append({"role": "assistant", "content": "answer %d" % i, "name": "bot"})
            history.append({"role": "user", "content": "PLEASE KINDLY explain, In Order To learn.", "name": "carol"})
            status, _, body = post_chat(gw, {"model": "fit", "messages": history, "max_tokens": 50, "x_extra": [1, {"a": 2}]})
            check(status == 200, "fitted request answered: %s %s" % (status, body[:300]))
            _, sent, _ = fake.bodies[-1]
            got = sent["messages"]
            check(len(got) < len(history) and len(got) >= 3, "the upstream got a fitted history: %d of %d messages" % (len(got), len(history)))
            check(got[0] == history[0], "system message kept: %s" % got[0])
            check(got[-1] == {"role": "user", "content": "pls explain, To learn.", "name": "carol"},
                  "the newest turn kept, compression applied, other fields kept: %s" % got[-1])
            check(got[1]["role"] == "user", "whole turns dropped (a kept history starts with a user turn): %s" % got[1])
            check(all(m.get("name") == "bot" for m in got if m["role"] == "assistant"), "assistant fields kept")
            check(sent.get("x_extra") == [1, {"a": 2}] and sent.get("max_tokens") == 50, "other fields forwarded: %s" % list(sent))
            # a short request is forwarded as sent (nothing changed: no rewrite)
            status, _, _ = post_chat(gw, {"model": "fit", "messages": [{"role": "user", "content": "hi"}]})
            check(status == 200 and fake.bodies[-1][1]["messages"] == [{"role": "user", "content": "hi"}], "short request unchanged")
            # max_tokens at or over the window: 400 naming it
            status, _, body = post_chat(gw, {"model": "fit", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 400})
            error = json.loads(body)["error"]
            check(status == 400 and error["param"] == "max_tokens" and error["code"] == "context_length_exceeded", "window too small: %s" % body)
            # exact counts with the rank file (every byte one token): prompt = 3 + role + content + 3
            text = "count me exactly"
            status, _, body = post_chat(gw, {"model": "sim-exact", "messages": [{"role": "user", "content": text}]})
            usage = json.loads(body)["usage"]
            check(status == 200 and usage["prompt_tokens"] == 3 + len("user") + len(text) + 3, "exact prompt tokens: %s" % usage)
            # the simulated model's history is fitted too (64 tokens: only the newest turn fits)
            status, _, body = post_chat(gw, {"model": "sim-exact", "max_tokens": 4, "messages": [
                {"role": "user", "content": "x" * 40}, {"role": "assistant", "content": "y" * 10}, {"role": "user", "content": "last"}]})
            usage = json.loads(body)["usage"]
            check(status == 200 and usage["prompt_tokens"] == 3 + 4 + 4 + 3, "simulated history fitted: %s" % usage)
            # no usage from the upstream: the gateway counts the generated text with the tokenizer
            raw = curl_stream(gw.port, {"model": "exact", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
            check(sse_events(raw)[-1] == "[DONE]", "stream through")
            metrics = wait_metric(gw, rb'llmfast_generation_tokens_total\{model="exact"\} 7')
            check(re.search(rb'llmfast_generation_tokens_total\{model="exact"\} 7\b', metrics),
                  "generated tokens counted with the rank file ('from ok' = 7 byte tokens): %s" %
                  re.findall(rb'llmfast_generation_tokens_total.*', metrics))
            check(re.search(rb"llmfast_prompt_messages_dropped_total [1-9]", metrics), "dropped messages counted")
            check(re.search(rb"llmfast_prompt_messages_compressed_total [1-9]", metrics), "compressed messages counted")


# ---- the simulated backend batches through DynamicBatcher -----------------------------------------
def test_batching():
    with Gateway("--sim-time-scale", "5", "--sim-batch", "--sim-max-batch", "8", "--sim-max-wait-ms", "100") as gw:
        results = []
        lock = threading.Lock()

        def one(i):
            status, _, body = post_chat(gw, dict(CHAT, max_tokens=3))
            with lock:
                results.append((status, json.loads(body)))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        check(len(results) == 8 and all(s == 200 for s, _ in results), "all batched requests answered: %s" % [s for s, _ in results])
        check(all(r["choices"][0]["message"]["content"] == "Large language models" for _, r in results), "answers intact")
        _, _, metrics = gw.request("GET", "/metrics")
        batches = int(re.search(rb"llmfast_sim_batches_total (\d+)", metrics).group(1))
        largest = int(re.search(rb"llmfast_sim_batch_size_max (\d+)", metrics).group(1))
        requests = int(re.search(rb"llmfast_sim_batched_requests_total (\d+)", metrics).group(1))
        print("8 concurrent requests -> %d batches, largest %d" % (batches, largest))
        check(requests == 8 and batches < 8 and largest >= 2, "concurrent requests formed batches: %d batches, largest %d" % (batches, largest))
        # streaming through the batcher, and a disconnect while queued leaves no trace
        raw = curl_stream(gw.port, dict(CHAT, stream=True, max_tokens=4))
        check(sse_events(raw)[-1] == "[DONE]", "batched stream completes")


# ---- the simulated backend as a continuous-batching engine (llmfast's ContinuousScheduler) ---------
ANSWER_WORDS = ["Large", " language", " models", " spend", " most", " of", " their", " time", " decoding", " one",
                " token", " at", " a", " time,", " so", " longer", " answers", " take", " longer."]


def simulated_text(tokens):
    # The sentence repeats after a space (the gateway's examples::simulated_answer).
    return "".join((" " if i and i % len(ANSWER_WORDS) == 0 else "") + ANSWER_WORDS[i % len(ANSWER_WORDS)]
                   for i in range(tokens))


def metric_value(metrics, name):
    m = re.search(rb"^" + re.escape(name.encode()) + rb" ([0-9.e+]+)$", metrics, re.M)
    check(m, "metric %s missing" % name)
    return float(m.group(1))


def test_continuous():
    with Gateway("--sim-time-scale", "5", "--sim-batching", "continuous", "--sim-max-batch", "8") as gw:
        # concurrent streams all complete, each with its own number of tokens
        results = {}
        lock = threading.Lock()

        def one(i):
            raw = curl_stream(gw.port, dict(CHAT, stream=True, max_tokens=10 + 7 * i, stream_options={"include_usage": True}))
            with lock:
                results[i] = raw

        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        check(len(results) == 8, "all streams answered: %s" % sorted(results))
        for i, raw in results.items():
            events = sse_events(raw)
            check(events and events[-1] == "[DONE]", "stream %d ends with [DONE]: %s" % (i, events[-2:]))
            chunks = [json.loads(e) for e in events[:-1]]
            text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
            check(text == simulated_text(10 + 7 * i), "stream %d content: %r" % (i, text))
            check(chunks[-1]["usage"]["completion_tokens"] == 10 + 7 * i, "stream %d usage: %s" % (i, chunks[-1]))
        metrics = wait_metric(gw, rb'llmfast_sim_engine_requests_total\{status="ok"\} 8\b')
        check(re.search(rb'llmfast_sim_engine_requests_total\{status="ok"\} 8\b', metrics), "8 sequences ended ok: %s" %
              re.findall(rb"llmfast_sim_engine_requests_total.*", metrics))
        largest = metric_value(metrics, "llmfast_sim_engine_step_sequences_max")
        steps = metric_value(metrics, "llmfast_sim_engine_steps_total")
        check(2 <= largest <= 8, "concurrent streams shared steps (at most --sim-max-batch): %d" % largest)
        check(steps < sum(10 + 7 * i for i in range(8)), "fewer steps than tokens: %d" % steps)
        print("8 concurrent streams -> %d steps, at most %d sequences in a step" % (steps, largest))

        # a short request submitted while a long one runs finishes first (it joins the running batch)
        tl, rl = in_thread(post_chat, gw, dict(CHAT, max_tokens=400))  # ~1.1 s in real time at scale 5
        wait_metric(gw, rb"llmfast_sim_engine_running 1\b")
        started = time.monotonic()
        status, _, body = post_chat(gw, dict(CHAT, max_tokens=5))
        short_done = time.monotonic()
        check(status == 200 and json.loads(body)["choices"][0]["message"]["content"] == simulated_text(5), "short answer: %s" % body[:200])
        check("done" not in rl, "the long request was still running when the short one finished")
        tl.join(30)
        check(rl.get("value", (0,))[0] == 200 and rl["done"] > short_done, "the long one finished after the short one: %s" % rl)
        print("short request answered in %.0f ms while the long one ran; the long one ended %.0f ms later" %
              ((short_done - started) * 1000, (rl["done"] - short_done) * 1000))

        # a client that goes away mid-stream cancels its sequence, which leaves the batch
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
        body = json.dumps(dict(CHAT, stream=True, max_tokens=5000)).encode()
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        got = b""
        while got.count(b'"content"') < 4:
            part = s.recv(65536)
            check(part, "stream ended early")
            got += part
        s.close()
        metrics = wait_metric(gw, rb'llmfast_sim_engine_requests_total\{status="cancelled"\} 1\b')
        check(re.search(rb'llmfast_sim_engine_requests_total\{status="cancelled"\} 1\b', metrics),
              "the disconnect cancelled the sequence: %s" % re.findall(rb"llmfast_sim_engine_requests_total.*", metrics))
        metrics = wait_metric(gw, rb"llmfast_sim_engine_running 0\b")
        check(metric_value(metrics, "llmfast_sim_engine_running") == 0, "the cancelled sequence freed its slot")
        # the gateway keeps serving through the engine
        raw = curl_stream(gw.port, dict(CHAT, stream=True, max_tokens=3))
        check(sse_events(raw)[-1] == "[DONE]", "stream after the cancel completes")
        code = gw.stop(timeout=15)
        check(code == 0, "exit code after stop: %s" % code)
    # continuous is the default; `off` (a timer per request, no engine) still answers
    with Gateway(*SIM, "--sim-batching", "off") as gw:
        raw = curl_stream(gw.port, dict(CHAT, stream=True, max_tokens=6))
        text = "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in sse_events(raw)[:-1])
        check(text == simulated_text(6), "off: stream content %r" % text)
        status, _, body = post_chat(gw, dict(CHAT, max_tokens=4))
        check(status == 200 and json.loads(body)["choices"][0]["message"]["content"] == simulated_text(4), "off: %s" % body[:200])
        _, _, metrics = gw.request("GET", "/metrics")
        check(b"llmfast_sim_engine" not in metrics and b"llmfast_sim_batches" not in metrics, "off: no batching metrics")
    with Gateway(*SIM) as gw:
        post_chat(gw, dict(CHAT, max_tokens=2))
        _, _, metrics = gw.request("GET", "/metrics")
        check(b"llmfast_sim_engine_steps_total" in metrics, "continuous is the default")


# ---- a slow reader is dropped, not buffered without bound -----------------------------------------
def test_slowreader():
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "gateway.json")
        with open(path, "w") as f:
            json.dump({"limits": {"max_tokens": 100000, "max_client_buffer_bytes": 65536}}, f)
        with Gateway("--sim-time-scale", "2000", "--config", path) as gw:
            rss_before = vm_rss_kb(gw.proc.pid)
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: the client reads nothing
            s.settimeout(10)
            s.connect(("127.0.0.1", gw.port))
            body = json.dumps(dict(CHAT, stream=True, max_tokens=60000)).encode()
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            metrics = wait_metric(gw, rb"llmfast_slow_clients_dropped_total 1", timeout=20)
            check(re.search(rb"llmfast_slow_clients_dropped_total 1", metrics), "the slow reader was dropped and counted")
            rss_after = vm_rss_kb(gw.proc.pid)
            got = b""
            try:
                while True:
                    part = s.recv(65536)
                    if not part:
                        break
                    got += part
            except OSError:
                pass
            s.close()
            check(b"[DONE]" not in got, "the dropped client did not get the whole stream")
            check(len(got) < 4 << 20, "what reached the client is bounded: %d bytes" % len(got))
            print("slow reader dropped after %d bytes reached it; gateway RSS %d -> %d kB" % (len(got), rss_before, rss_after))
            check(rss_after - rss_before < 64 * 1024, "the gateway's memory did not grow with the stream: %d -> %d kB" % (rss_before, rss_after))
            # a normal reader of the same stream size is not dropped
            status, _, body = gw.request("GET", "/health")
            check(status == 200, "still serving")


def test_drain_cut():
    with Gateway("--drain-grace-ms", "300") as gw:
        result = {}

        def stream():
            result["raw"] = curl_stream(gw.port, dict(CHAT, stream=True, max_tokens=400))  # ~5 s in real time

        t = threading.Thread(target=stream)
        t.start()
        time.sleep(0.4)
        gw.proc.send_signal(signal.SIGTERM)
        t.join(20)
        code = gw.stop(timeout=15)
        check(code == 0, "exit code after SIGTERM: %s" % code)
        events = sse_events(result.get("raw", b""))
        check(len(events) >= 2, "the stream had started: %s" % events[:2])
        last = json.loads(events[-1])
        check("error" in last and last["error"]["code"] == "shutting_down", "a cut stream ends with an error event: %s" % events[-2:])


# ---- the response cache ------------------------------------------------------------------------------
def content_chunks(raw):
    """(content pieces, finish reasons, usage objects, done) of an SSE chat stream."""
    pieces, finishes, usages, done = [], [], [], False
    for data in sse_events(raw):
        if data == "[DONE]":
            done = True
            continue
        event = json.loads(data)
        check("error" not in event, "error event: %s" % data)
        if event.get("usage"):
            usages.append(event["usage"])
        for choice in event["choices"]:
            if choice["delta"].get("content"):
                pieces.append(choice["delta"]["content"])
            if choice.get("finish_reason"):
                finishes.append(choice["finish_reason"])
    return pieces, finishes, usages, done


def test_cache():
    with tempfile.TemporaryDirectory() as tmp:
        admin = os.path.join(tmp, "admin.key")
        with open(admin, "w") as f:
            f.write("admin-secret\n")
        keys = os.path.join(tmp, "keys")
        with open(keys, "w") as f:
            f.write("alice:key-a\nbob:key-b\n")
        with Gateway("--sim-time-scale", "5", "--admin-key-file", admin, "--api-keys-file", keys, "--access-log", "off") as gw:
            A = {"Authorization": "Bearer key-a"}
            B = {"Authorization": "Bearer key-b"}

            def ask(text, headers=A, **fields):
                body = dict(model="llmfast-sim", messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": text}])
                body.update(fields)
                status, h, raw = post_chat(gw, body, headers)
                check(status == 200, "status %s: %s" % (status, raw[:300]))
                return h.get("x-llmfast-cache"), raw

            # a repeated deterministic stream: an exact hit, same content in the same chunks, usage, [DONE]
            det = dict(temperature=0, max_tokens=7, stream=True, stream_options={"include_usage": True})
            kind1, raw1 = ask("what is a cache?", **det)
            kind2, raw2 = ask("what is a cache?", **det)
            check(kind1 == "miss" and kind2 == "exact", "cache header: %s then %s" % (kind1, kind2))
            p1, f1, u1, d1 = content_chunks(raw1)
            p2, f2, u2, d2 = content_chunks(raw2)
            check(p1 == p2 and len(p2) == 7, "replayed chunks %s vs %s" % (p2, p1))
            check(f1 == f2 == ["length"] and d1 and d2, "finish %s %s, done %s %s" % (f1, f2, d1, d2))
            check(len(u2) == 1 and u1 == u2, "usage %s vs %s" % (u2, u1))
            check(json.loads(sse_events(raw2)[0])["choices"][0]["delta"].get("role") == "assistant", "the replay opens with the role chunk")
            # the same request without include_usage: no usage chunk; as stream=false: one chat.completion
            kind, raw = ask("what is a cache?", temperature=0, max_tokens=7, stream=True)
            check(kind == "exact" and content_chunks(raw)[2] == [] and content_chunks(raw)[0] == p1, "hit without usage: %s" % raw[-200:])
            kind, raw = ask("what is a cache?", temperature=0, max_tokens=7)
            answer = json.loads(raw)
            check(kind == "exact" and answer["object"] == "chat.completion", "stream=false hit: %s %s" % (kind, raw[:200]))
            check(answer["choices"][0]["message"]["content"] == "".join(p1) and answer["usage"] == u1[0], "stream=false hit content: %s" % answer)
            # other sampling parameters, another system prompt or another tenant: another scope
            check(ask("what is a cache?", temperature=0, max_tokens=8, stream=True)[0] == "miss", "max_tokens is in the scope")
            check(ask("what is a cache?", headers=B, **det)[0] == "miss", "the tenant is in the scope")
            # a seed makes a request deterministic; no temperature (1 by default) or 0.7 is never cached
            check([ask("seeded", seed=7)[0] for _ in range(2)] == ["miss", "exact"], "a seeded request is cached")
            check([ask("random")[0] for _ in range(2)] == ["miss", "miss"], "default temperature is not cached")
            check([ask("warm", temperature=0.7)[0] for _ in range(2)] == ["miss", "miss"], "temperature 0.7 is not cached")
            # Cache-Control: no-store answers from the cache but stores nothing; no-cache skips the lookup (and stores)
            ns = {"Cache-Control": "no-store", **A}
            nc = {"Cache-Control": "no-cache", **A}
            check([ask("no store", headers=ns, temperature=0)[0] for _ in range(2)] == ["miss", "miss"], "no-store stores nothing")
            check(ask("no store", temperature=0)[0] == "miss", "no-store left nothing behind")
            check(ask("no store", headers=ns, temperature=0)[0] == "exact", "no-store still reads the cache")
            check(ask("no store", headers=nc, temperature=0)[0] == "miss", "no-cache skips the lookup")
            check(ask("fresh", headers=nc, temperature=0)[0] == "miss" and ask("fresh", temperature=0)[0] == "exact", "no-cache stores the answer")
            check(ask("both", headers={"Cache-Control": "no-cache, no-store", **A}, temperature=0)[0] == "miss" and
                  ask("both", temperature=0)[0] == "miss", "no-cache, no-store: neither")

            # concurrent identical requests: one backend call, the others coalesced
            _, _, before = gw.request("GET", "/metrics")
            threads = [in_thread(ask, "concurrent", temperature=0, max_tokens=150, stream=True) for _ in range(5)]
            for t, _ in threads:
                t.join(30)
            kinds = sorted(r["value"][0] for _, r in threads if "value" in r)
            check(kinds == ["coalesced"] * 4 + ["miss"], "concurrent kinds: %s %s" % (kinds, [r.get("error") for _, r in threads]))
            pieces = [content_chunks(r["value"][1])[0] for _, r in threads]
            check(all(p == pieces[0] and len(p) == 150 for p in pieces), "coalesced streams have the leader's chunks")
            _, _, after = gw.request("GET", "/metrics")
            stores = lambda text: int(re.search(rb'llmfast_cache_stores_total\{model="llmfast-sim"\} (\d+)', text).group(1))
            check(stores(after) - stores(before) == 1, "one answer stored for five requests")

            # a client that disconnects mid-stream: nothing stored, the next identical request is a miss
            body = json.dumps({"model": "llmfast-sim", "temperature": 0, "max_tokens": 1000, "stream": True,
                               "messages": [{"role": "user", "content": "interrupted"}]}).encode()

            def start_and_drop():
                s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
                s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer key-a\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                got = b""
                while got.count(b"content") < 3:
                    part = s.recv(65536)
                    check(part, "stream ended early")
                    got += part
                s.close()
                return got
            head = start_and_drop()
            check(b"x-llmfast-cache: miss" in head.lower(), "the first interrupted request was a miss: %s" % head[:300])
            wait_metric(gw, rb"llmfast_client_disconnects_total [1-9]")
            head = start_and_drop()
            check(b"x-llmfast-cache: miss" in head.lower(), "an interrupted stream was not stored: %s" % head[:300])

            # purge: needs the admin key (401 without or with a wrong one, 403 with a tenant's key)
            def purge(body, headers):
                h = {"Content-Type": "application/json"}
                h.update(headers)
                return gw.request("POST", "/admin/cache/purge", body, h)
            check(purge({}, {})[0] == 401, "purge without a key")
            check(purge({}, {"Authorization": "Bearer nope"})[0] == 401, "purge with a wrong key")
            check(purge({}, A)[0] == 403, "purge with a tenant's key")
            check(gw.request("GET", "/admin/cache/purge")[0] == 405, "purge is POST only")
            ADMIN = {"Authorization": "Bearer admin-secret"}
            check(purge({"model": 3}, ADMIN)[0] == 400, "purge with a bad body")
            check(ask("what is a cache?", **det)[0] == "exact", "still cached before the purge")
            status, _, raw = purge({"model": "other-model"}, ADMIN)
            check(status == 200 and json.loads(raw)["purged"] == 0, "purging another model: %s" % raw)
            status, _, raw = purge({"model": "llmfast-sim", "tenant": "bob"}, ADMIN)
            check(status == 200 and json.loads(raw)["purged"] == 1, "purging bob's scope: %s" % raw)
            check(ask("what is a cache?", **det)[0] == "exact", "alice's entry survives bob's purge")
            check(ask("what is a cache?", headers=B, **det)[0] == "miss", "bob's entry was purged")
            status, _, raw = purge({"model": "llmfast-sim"}, ADMIN)
            check(status == 200 and json.loads(raw)["purged"] >= 3, "purging the model: %s" % raw)
            check(ask("what is a cache?", **det)[0] == "miss", "purged: a miss")
            check(ask("seeded", seed=7)[0] == "miss", "purged: a miss (seeded)")
            status, _, raw = purge(b"", ADMIN)
            check(status == 200 and json.loads(raw)["purged"] >= 1, "purging everything: %s" % raw)
            check(ask("what is a cache?", **det)[0] == "miss", "purged everything: a miss")

            # metrics: hits by kind, per model
            _, _, metrics = gw.request("GET", "/metrics")
            text = metrics.decode()
            check_metrics_text(text)
            exact = int(re.search(r'llmfast_cache_hits_total\{kind="exact",model="llmfast-sim"\} (\d+)', text).group(1))
            coalesced = int(re.search(r'llmfast_cache_hits_total\{kind="coalesced",model="llmfast-sim"\} (\d+)', text).group(1))
            check(exact == 8 and coalesced == 4, "hits by kind: exact %d coalesced %d\n%s" % (exact, coalesced, text[-1500:]))
            check(re.search(r'llmfast_cache_hits_total\{kind="semantic",model="llmfast-sim"\} 0', text), "no semantic hits")
            check(re.search(r"llmfast_cache_entries \d+", text), "entries gauge")

        # an upstream's stream: stored from the forwarded bytes, replayed with its chunks; a failed one is not stored
        with FakeUpstream() as fake, Gateway("--config", upstream_config(tmp, fake), "--access-log", "off") as gw:
            up = dict(CHAT, model="m-ok", temperature=0, stream=True)
            results = [post_chat(gw, up) for _ in range(2)]
            kinds = [h.get("x-llmfast-cache") for _, h, _ in results]
            check(kinds == ["miss", "exact"], "upstream stream: %s" % kinds)
            check(content_chunks(results[1][2])[0] == ["from ", "ok"] == content_chunks(results[0][2])[0], "upstream chunks replayed")
            check(len(fake.bodies) == 1, "one upstream call for two requests: %d" % len(fake.bodies))
            kinds = [post_chat(gw, dict(up, model="m-reset"))[1].get("x-llmfast-cache") for _ in range(2)]
            check(kinds == ["miss", "miss"], "a stream that failed after content is not stored: %s" % kinds)
            kinds = [post_chat(gw, dict(up, model="m-ok", stream=False))[1].get("x-llmfast-cache") for _ in range(2)]
            check(kinds == ["exact", "exact"], "stream=false served from the stream's entry: %s" % kinds)

        # no admin key configured: 403; --no-cache: never cached
        with Gateway("--sim-time-scale", "50", "--no-cache", "--access-log", "off") as gw:
            status, _, _ = gw.request("POST", "/admin/cache/purge", {}, {"Authorization": "Bearer x", "Content-Type": "application/json"})
            check(status == 403, "purge without an admin key configured: %s" % status)
            kinds = [post_chat(gw, dict(CHAT, temperature=0))[1].get("x-llmfast-cache") for _ in range(2)]
            check(kinds == ["miss", "miss"], "--no-cache: %s" % kinds)


def csp_hash(page, tag):
    """'sha256-…' of the text inside the page's first <tag>…</tag>, as a browser computes it for the CSP."""
    import base64
    import hashlib
    text = page.split(b"<%s>" % tag, 1)[1].split(b"</%s>" % tag, 1)[0]
    return "'sha256-%s'" % base64.b64encode(hashlib.sha256(text).digest()).decode()


def test_playground():
    """GET / serves the playground; headless Chromium (DevTools protocol, playground_browser.mjs) uses it."""
    here = os.path.dirname(os.path.abspath(__file__))
    chromium = find_chromium()
    if not chromium:
        skip_or_fail("chromium is not installed (Debian package chromium)")
    if not shutil.which("node") or subprocess.run(["node", "--experimental-websocket", "-e", "process.exit(typeof WebSocket === 'function' ? 0 : 1)"],
                                                  capture_output=True, timeout=30).returncode != 0:
        skip_or_fail("node >= 20 (its WebSocket, --experimental-websocket) is not installed")
    with tempfile.TemporaryDirectory() as tmp, FakeUpstream() as fake:
        keys = os.path.join(tmp, "keys")
        with open(keys, "w") as f:
            f.write("playground:sk-play\n")
        # the simulated model in real time (scale 1: a 19-token answer takes about 0.3 s, long enough to be
        # seen streaming), plus the fake upstream's models (m-reset: an error event after "partial ")
        with Gateway("--config", upstream_config(tmp, fake), "--access-log", "off") as gw, \
                Gateway("--api-keys-file", keys, "--access-log", "off") as keyed:
            # the page's headers: HTML, a CSP that names exactly its own script and style, revalidation by ETag
            status, headers, page = gw.request("GET", "/", headers={})
            check(status == 200 and headers.get("content-type") == "text/html; charset=utf-8", "GET /: %s %s" % (status, headers))
            check(b"<script src" not in page and b"<link" not in page and b"http://" not in page and b"https://" not in page,
                  "the page loads nothing from elsewhere")
            csp = headers.get("content-security-policy", "")
            for want in ("default-src 'none'", "script-src %s" % csp_hash(page, b"script"), "style-src %s" % csp_hash(page, b"style"),
                         "connect-src 'self'", "frame-ancestors 'none'"):
                check(want + ";" in csp + ";", "CSP %r lacks %r" % (csp, want))
            check("unsafe-inline" not in csp, "no unsafe-inline: %s" % csp)
            etag = headers.get("etag", "")
            check(re.fullmatch(r'"[0-9a-f]{32}"', etag) and headers.get("cache-control") == "no-cache", "ETag/Cache-Control: %s" % headers)
            status, headers, body = gw.request("GET", "/", headers={"If-None-Match": etag})
            check(status == 304 and body == b"" and headers.get("etag") == etag, "If-None-Match: %s %s %r" % (status, headers, body[:80]))
            check(gw.request("GET", "/", headers={"If-None-Match": '"0123"'})[0] == 200, "another ETag: the page")
            check(keyed.request("GET", "/", headers={})[0] == 200, "the page needs no key (its API calls carry one)")
            status, headers, _ = gw.request("POST", "/", b"{}")
            check(status == 405 and headers.get("allow") == "GET", "POST /: %s %s" % (status, headers))

            shot = os.environ.get("LLMFAST_PLAYGROUND_SCREENSHOT") or os.path.join(tmp, "playground.png")
            profile = os.path.join(tmp, "chromium-profile")
            os.mkdir(profile)
            with Chromium(chromium, profile) as browser:
                try:
                    out = subprocess.run(["node", "--experimental-websocket", os.path.join(here, "playground_browser.mjs"), browser.ws_url,
                                          "http://127.0.0.1:%d/" % gw.port, "http://127.0.0.1:%d/" % keyed.port, "sk-play", shot, "m-reset"],
                                         capture_output=True, text=True, timeout=180)
                except subprocess.TimeoutExpired as e:  # its own waits end within 20 s each: a hang is a failure
                    fail("the browser test did not finish within 180 s:\n%s\nchromium log:\n%s" % (e.stdout, browser.log_tail()))
                print(out.stdout, end="")
                check(out.returncode == 0, "the browser test failed:\n%s%s\nchromium log:\n%s" % (out.stdout, out.stderr, browser.log_tail()))
            with open(shot, "rb") as f:
                check(f.read(8) == b"\x89PNG\r\n\x1a\n", "the screenshot is a PNG")
            # what the page showed is what the gateway counted: two misses and two exact hits on the first gateway
            _, _, metrics = gw.request("GET", "/metrics")
            exact = re.search(r'llmfast_cache_hits_total\{kind="exact",model="llmfast-sim"\} (\d+)', metrics.decode())
            check(exact and int(exact.group(1)) == 2, "exact hits counted by the gateway: %s" % (exact and exact.group(0)))
# ---- soak and faults: many clients for a fixed time, an upstream killed, another stalled (soak.py) ----
def test_soak():
    import soak
    with tempfile.TemporaryDirectory() as tmp:
        soak.run(Gateway, check, tmp)


def test_embeddings():
    # The response cache with a remote embedder (--embeddings-url): here another gateway's own
    # /v1/embeddings (the built-in HashingEmbedder behind HTTP). Cache steps run on the cache pool.
    with Gateway("--access-log", "off") as emb:
        with Gateway("--sim-time-scale", "5", "--access-log", "off", "--cache-semantic",
                     "--embeddings-url", emb.base, "--embeddings-model", "llmfast-hashing",
                     "--embeddings-dimension", "384") as gw:
            def ask(text, **fields):
                body = dict(model="llmfast-sim", temperature=0, max_tokens=5, messages=[{"role": "user", "content": text}])
                body.update(fields)
                status, h, raw = post_chat(gw, body)
                check(status == 200, "status %s: %s" % (status, raw[:300]))
                return h.get("x-llmfast-cache"), raw
            stores = lambda n: rb'llmfast_cache_stores_total\{model="llmfast-sim"\} %d\b' % n
            kind1, raw1 = ask("how do I reset my password?")
            # with a remote embedder the store runs on the cache pool, after the answer went out
            wait_metric(gw, stores(1))
            kind2, raw2 = ask("how do I reset my password??")  # another normalized prompt, the same words
            check(kind1 == "miss" and kind2 == "semantic", "remote embedder: %s then %s" % (kind1, kind2))
            check(json.loads(raw1)["choices"][0]["message"]["content"] == json.loads(raw2)["choices"][0]["message"]["content"],
                  "the semantic hit replays the stored answer")
            check(ask("how do I reset my password?")[0] == "exact", "exact tier")
            # concurrent identical requests through the pool: one backend call, one store (the others
            # coalesce, or hit the entry when they reach the cache after it was stored)
            threads = [in_thread(ask, "concurrent via the pool", max_tokens=150, stream=True) for _ in range(4)]
            for t, _ in threads:
                t.join(30)
            kinds = sorted(r["value"][0] for _, r in threads if "value" in r)
            check(len(kinds) == 4 and kinds.count("miss") == 1 and all(k in ("coalesced", "exact", "miss") for k in kinds),
                  "concurrent kinds: %s %s" % (kinds, [r.get("error") for _, r in threads]))
            wait_metric(gw, stores(2))
            _, _, text = gw.request("GET", "/metrics")
            check(re.search(stores(2), text), "one answer stored for four requests")
            _, _, text = gw.request("GET", "/metrics")
            check(re.search(rb"llmfast_cache_embedder_failures_total 0", text), "no embedder failures while it is up")
            # The embedding server goes away: requests still succeed (misses), failures are counted,
            # answers are stored for exact hits only.
            emb.stop()
            check(ask("a question while the embedder is down")[0] == "miss", "embedder down: a miss")
            wait_metric(gw, stores(3))
            check(ask("a question while the embedder is down")[0] == "exact", "stored exact-only while the embedder is down")
            check(ask("how do I reset my password???")[0] == "miss", "no semantic hit without the embedder")
            _, _, text = gw.request("GET", "/metrics")
            failures = int(re.search(rb"llmfast_cache_embedder_failures_total (\d+)", text).group(1))
            check(failures >= 2, "embedder failures counted: %d" % failures)
    # bad flags: a clear error at start-up
    for args, what in [(["--embeddings-url", "http://127.0.0.1:9/v1"], "--embeddings-model"),
                       (["--embeddings-url", "http://127.0.0.1:9/v1", "--embeddings-model", "m"], "--embeddings-dimension"),
                       (["--embeddings-key", "x"], "never go on the command line")]:
        proc = subprocess.run([os.environ["LLMFAST_GATEWAY"], "--port", "0", *args], capture_output=True, text=True, timeout=20)
        check(proc.returncode != 0 and what in proc.stderr, "%s: exit %s, stderr %s" % (args, proc.returncode, proc.stderr[-300:]))


def metric_total(text, name):
    """The sum of a metric's samples over every label set (0 when absent)."""
    if isinstance(text, bytes):
        text = text.decode()
    return sum(float(v) for v in re.findall(r"^%s(?:\{[^}]*\})? (\S+)$" % re.escape(name), text, re.M))


def wait_total(gw, name, at_least, timeout=10):
    """Polls /metrics until `name` reaches `at_least` (bounded); returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = metric_total(gw.request("GET", "/metrics")[2], name)
        if value >= at_least or time.monotonic() > deadline:
            return value
        time.sleep(0.01)


def test_redis():
    # The shared tier (--redis): two gateways on one real redis-server share their answers; Redis
    # killed: every request is still answered (locally), counted; Redis restarted: shared again.
    gateway = os.environ["LLMFAST_GATEWAY"]
    probe = subprocess.run([gateway, "--port", "0", "--redis", "redis://127.0.0.1:1", "--redis-prefix", "a{b"],
                           capture_output=True, text=True, timeout=20)
    if "without hiredis" in probe.stderr:
        skip_or_fail("this llmfast-gateway was built without hiredis (libhiredis-dev): --redis is unsupported")
    check(probe.returncode == 2 and "--redis-prefix" in probe.stderr, "a bad --redis-prefix: %s %s" % (probe.returncode, probe.stderr[-300:]))
    with tempfile.TemporaryDirectory() as tmp, RedisServer() as redis:
        # A generous Redis bound (the default is 4 ms): on a loaded test machine one slow reply would
        # turn an expected shared hit into a miss; the outage below is a refused connection (at once).
        admin = os.path.join(tmp, "admin.key")
        with open(admin, "w") as f:
            f.write("admin-secret\n")
        flags = ["--sim-time-scale", "50", "--access-log", "off", "--cache-semantic", "--redis", redis.url,
                 "--redis-prefix", "test-%d" % os.getpid(), "--redis-timeout-ms", "200", "--admin-key-file", admin]
        with Gateway(*flags) as a, Gateway(*flags) as b:
            def ask(gw, text, **fields):
                body = dict(model="llmfast-sim", temperature=0, max_tokens=6, messages=[{"role": "user", "content": text}])
                body.update(fields)
                status, h, raw = post_chat(gw, body)
                check(status == 200, "status %s: %s" % (status, raw[:300]))
                return h.get("x-llmfast-cache"), raw

            def total(gw, name):
                return metric_total(gw.request("GET", "/metrics")[2], name)
            writes = "llmfast_cache_shared_writes_total"
            from_b = lambda: total(b, "llmfast_cache_shared_hits_total") + total(b, "llmfast_cache_shared_applied_total")  # noqa: E731
            check(total(a, "llmfast_redis_connected") == 1, "connected after the start-up probe")

            # stream=false: answered by A (miss, written through), then an exact hit on B
            before = from_b()
            kind, raw1 = ask(a, "what does a shared cache share?")
            check(kind == "miss", "first on A: %s" % kind)
            check(wait_total(a, writes, 1) >= 1, "A wrote its answer to Redis")
            kind, raw2 = ask(b, "what does a shared cache share?")
            check(kind == "exact", "the same request on B: %s" % kind)
            check(json.loads(raw1)["choices"][0]["message"]["content"] == json.loads(raw2)["choices"][0]["message"]["content"],
                  "B replays A's answer")
            check(from_b() > before, "B's hit came from Redis (a GET or the change feed)")

            # streamed, with usage: the replay on B has A's chunks and usage
            det = dict(stream=True, stream_options={"include_usage": True}, max_tokens=9)
            kind, raw1 = ask(a, "stream it from another replica", **det)
            check(kind == "miss", "streamed on A: %s" % kind)
            check(wait_total(a, writes, 2) >= 2, "A wrote the streamed answer")
            kind, raw2 = ask(b, "stream it from another replica", **det)
            p1, f1, u1, d1 = content_chunks(raw1)
            p2, f2, u2, d2 = content_chunks(raw2)
            check(kind == "exact" and p1 == p2 and len(p2) == 9 and u1 == u2 and d2, "streamed on B: %s %s vs %s" % (kind, p2, p1))

            # the same request on A and B at once: computed once (B waits for A's answer: coalesced)
            # 2,400 tokens at time scale 50: A streams for ~0.6 s, long enough for B to ask on a loaded machine
            body = json.dumps({"model": "llmfast-sim", "temperature": 0, "max_tokens": 2400, "stream": True,
                               "messages": [{"role": "user", "content": "computed once across replicas"}]}).encode()
            s = socket.create_connection(("127.0.0.1", a.port), timeout=20)
            try:
                s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
                got = b""
                while got.count(b"content") < 3:  # A is answering (and holds the lock)
                    part = s.recv(65536)
                    check(part, "A's stream ended early")
                    got += part
                kind, raw_b = ask(b, "computed once across replicas", max_tokens=2400, stream=True)
                while part:
                    part = s.recv(65536)
                    got += part
            finally:
                s.close()
            check(b"x-llmfast-cache: miss" in got.lower() and kind == "coalesced", "A: %s, B: %s" % (got[:200], kind))
            check(len(content_chunks(raw_b)[0]) == 2400, "B replays A's 2,400 chunks")
            check(total(b, "llmfast_redis_locks_held_total") >= 1 and total(a, "llmfast_redis_locks_acquired_total") >= 1, "the lock")

            # semantic: B's local index follows A's inserts (embeddings travel with the entries)
            check(ask(a, "how do I reset my password?")[0] == "miss", "new on A")
            deadline = time.monotonic() + 10
            while from_b() < before + 4 and time.monotonic() < deadline:  # B has A's four entries (a GET hit or the feed)
                time.sleep(0.01)
            check(from_b() >= before + 4, "B has A's four inserts")
            check(ask(b, "how do I reset my password??")[0] == "semantic", "a paraphrase on B is a semantic hit on A's entry")

            # a purge on A reaches B (a tombstone on the stream); it runs on A's cache pool
            status, _, raw = a.request("POST", "/admin/cache/purge", {"model": "llmfast-sim"},
                                       {"Authorization": "Bearer admin-secret", "Content-Type": "application/json"})
            check(status == 200 and json.loads(raw)["purged"] >= 3, "purge on A: %s %s" % (status, raw))
            check(wait_total(b, "llmfast_cache_shared_tombstones_applied_total", 1) >= 1, "B applied A's purge")
            check(ask(b, "what does a shared cache share?")[0] == "miss", "purged on A: a miss on B too")

            # Redis killed: every request still answered (misses go to the backend), counted unavailable
            redis.kill()
            for gw in (a, b):
                stored = total(gw, "llmfast_cache_stores_total")
                check(ask(gw, "asked while Redis is down")[0] == "miss", "Redis down: a miss")
                # the store runs on the cache pool after the answer went out (until then a repeat coalesces)
                check(wait_total(gw, "llmfast_cache_stores_total", stored + 1) >= stored + 1, "Redis down: the answer is stored locally")
                kind = ask(gw, "asked while Redis is down", stream=True)[0]
                check(kind == "exact", "Redis down: the local tier still answers (%s)" % kind)
            for gw in (a, b):
                text = gw.request("GET", "/metrics")[2]
                check(metric_total(text, "llmfast_cache_shared_unavailable_total") + metric_total(text, "llmfast_cache_shared_write_failures_total") >= 1,
                      "Redis down is counted")
                check(metric_total(text, "llmfast_redis_unavailable_total") >= 1 and metric_total(text, "llmfast_redis_connected") == 0,
                      "the tier's view: unavailable, not connected")
                check_metrics_text(text.decode())

            # Redis back (empty, no persistence): after the replicas reconnect (backoff <= 1 s), an
            # answer of A is again a hit on B. Bounded: a few fresh prompts until one is shared.
            redis.start()
            shared_again = False
            deadline = time.monotonic() + 15
            i = 0
            while not shared_again and time.monotonic() < deadline:
                i += 1
                prompt = "after the restart, question %d" % i
                done = total(a, writes)
                check(ask(a, prompt)[0] == "miss", "a fresh prompt on A")
                if wait_total(a, writes, done + 1, timeout=2) < done + 1:
                    time.sleep(0.2)  # A still backing off: its write was dropped (counted); try another prompt
                    continue
                shared_again = ask(b, prompt)[0] == "exact"
            check(shared_again, "shared again within 15 s of the restart (%d prompts)" % i)
            check(total(a, "llmfast_redis_reconnects_total") >= 1 and total(a, "llmfast_redis_connected") == 1, "A reconnected")

        # the password from a file (AUTH), never on the command line or in an error message
        password = os.path.join(tmp, "redis.password")
        with open(password, "w") as f:
            f.write("s3cret-pw\n")
        with RedisServer("--requirepass", "s3cret-pw") as secure:
            with Gateway("--sim-time-scale", "50", "--access-log", "off", "--redis", secure.url, "--redis-timeout-ms", "200",
                         "--redis-password-file", password) as g:
                status, _, _ = post_chat(g, dict(CHAT, temperature=0))
                check(status == 200 and wait_total(g, writes, 1) >= 1, "an answer written with AUTH")
                with open("/proc/%d/cmdline" % g.proc.pid, "rb") as f:
                    check(b"s3cret-pw" not in f.read(), "the password is not in argv (ps)")
                keys = secure.command("DBSIZE", password="s3cret-pw")
                check(keys.startswith(b":") and int(keys[1:]) >= 2, "entry + stream in Redis: %r" % keys)

        # bad flags: a clear start-up error (exit 2, as every flag error), the password never echoed
        for args, what in [(["--redis", "http://127.0.0.1:6379"], "redis://"),
                           (["--redis", "redis://127.0.0.1:99999"], "port"),
                           (["--redis", "redis://127.0.0.1/x"], "database"),
                           (["--redis", "redis://127.0.0.1", "--no-cache"], "cache is off"),
                           (["--redis", "redis://127.0.0.1", "--redis-timeout-ms", "0"], "--redis-timeout-ms"),
                           (["--redis-password-file", password], "needs --redis"),
                           (["--redis", "redis://:inline@127.0.0.1", "--redis-password-file", password], "has a password already"),
                           (["--redis", "redis://127.0.0.1:0", "--redis-password-file", password], "port")]:
            proc = subprocess.run([gateway, "--port", "0", *args], capture_output=True, text=True, timeout=20)
            check(proc.returncode == 2 and what in proc.stderr, "%s: exit %s, stderr %s" % (args, proc.returncode, proc.stderr[-300:]))
            check("s3cret-pw" not in proc.stderr, "%s: the password is masked: %s" % (args, proc.stderr[-300:]))


if __name__ == "__main__":
    group = sys.argv[1]
    globals()["test_" + group]()
    print("PASS", group)
