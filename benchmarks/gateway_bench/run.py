#!/usr/bin/python3
"""The gateway benchmark's driver: starts the processes pinned to cores, reads their CPU time and memory
from /proc, and prints the figures of docs/gateway.md#performance as Markdown tables.

    cmake --preset bench && cmake --build --preset bench --target llmfast-gateway gateway_bench_tool -j2
    /usr/bin/python3 benchmarks/gateway_bench/run.py [--quick] [--repeat N] [--sections 1,2,3,4,5] [--json FILE]

Processes: the fake upstream and the load generator (gateway_bench_tool, one thread each) on core 0,
the system under test (llmfast-gateway with --threads 1, or the FastAPI baseline with one uvicorn
worker) on core 1, so what the system under test costs is its own core's CPU time, read from
/proc/<pid>/stat before and after each run. The load generator reports its own CPU time.

Sections: 1 overhead (direct vs through the gateway, cache off), 2 against FastAPI + uvicorn + httpx,
3 concurrency (10,000 streams on the simulated backend, 4,000 pass-through; memory per stream as the
slope of VmRSS over open streams), 4 the cache (a replayed hit vs a miss), 5 the simulated backend's
batching at 64 clients. --quick: tiny counts, seconds, for CI (checks that everything still runs).
"""
import argparse
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CLK_TCK = os.sysconf("SC_CLK_TCK")

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--build", default=os.path.join(ROOT, "build", "bench"), help="the CMake build directory")
ap.add_argument("--quick", action="store_true", help="tiny counts (CI: checks it runs, judges nothing)")
ap.add_argument("--repeat", type=int, default=1, help="interleaved repetitions of sections 1-2 (medians are reported)")
ap.add_argument("--sections", default="1,2,3,4,5")
ap.add_argument("--json", help="also write every measurement here")
ap.add_argument("--gateway", help="the llmfast-gateway binary (default: the one in --build)")
ap.add_argument("--nice", type=int, default=0,
                help="run every benchmark process at this nice value (e.g. -10 as root: the measurement is "
                     "less disturbed by other work on a shared machine); 0 = unchanged")
args = ap.parse_args()
SECTIONS = {int(s) for s in args.sections.split(",") if s}

GATEWAY = args.gateway or os.path.join(args.build, "examples", "gateway", "llmfast-gateway")
TOOL = os.path.join(args.build, "benchmarks", "gateway_bench", "gateway_bench_tool")
FASTAPI = os.path.join(HERE, "fastapi_gateway.py")
for path in (GATEWAY, TOOL):
    if not os.access(path, os.X_OK):
        sys.exit(f"run.py: {path} is missing: cmake --build --preset bench --target llmfast-gateway gateway_bench_tool")

NICE = ["nice", "-n", str(args.nice)] if args.nice else []
ncpu = os.cpu_count() or 1
LOAD_CORE, SUT_CORE = ("0", "1") if ncpu >= 2 else ("0", "0")
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it (ulimit -n <hard>)
SPREAD_MS = 640  # one stream: 64 tokens, 10 ms apart
RESULTS = {"quick": args.quick, "uptime_before": open("/proc/loadavg").read().split()[:3], "nofile": hard}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    """CPU seconds of a process. /proc/<pid>/stat's utime + stime are sampled at the clock tick (10 ms),
    which miscounts a process that runs in short bursts (an event loop woken per chunk), so the figure
    is the scheduler's exact runtime, /proc/<pid>/task/*/schedstat (ns), summed over the live threads;
    the tick-based count also includes exited threads and is kept as a cross-check (cpu_seconds_stat)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass  # the thread ended meanwhile
    return total / 1e9


def cpu_seconds_stat(pid, user_only=False):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15
    return (utime if user_only else utime + stime) / CLK_TCK


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Server:
    """A process pinned to a core, ready once its port accepts connections; always stopped."""
    live = []

    def __init__(self, name, cmd, core, port):
        self.name, self.port = name, port
        self.proc = subprocess.Popen(NICE + ["taskset", "-c", core] + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        Server.live.append(self)
        deadline = time.time() + 30
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"run.py: {name} exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise SystemExit(f"run.py: {name} did not listen on {port} within 30 s")
                time.sleep(0.05)
        self.pid = self.proc.pid  # taskset execs the program: same pid

    def cpu(self):
        return cpu_seconds(self.pid)

    def rss(self):
        return rss_kib(self.pid)

    def metric(self, name):
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10).read().decode()
        return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith(name))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self in Server.live:
            Server.live.remove(self)


def stop_all():
    for s in list(Server.live):
        s.stop()


def upstream(tokens=64, interval_ms=10):
    port = free_port()
    return Server("fake upstream", [TOOL, "upstream", "--port", str(port), "--tokens", str(tokens),
                                    "--interval-ms", str(interval_ms)], LOAD_CORE, port)


def gateway(*flags):
    port = free_port()
    return Server("llmfast-gateway", [GATEWAY, "--port", str(port), "--threads", "1", "--access-log", "off",
                                      "--max-running", "20000", "--max-queue", "20000", *flags], SUT_CORE, port)


def fastapi(up):
    port = free_port()
    return Server("FastAPI", ["/usr/bin/python3", FASTAPI, "--port", str(port), "--upstream",
                              f"http://127.0.0.1:{up.port}/v1"], SUT_CORE, port)


def load(port, concurrency, streams, model="bench", max_tokens=64, seed=1, stall_ms=10000, stages=None,
         on_stage=None, sut=None, spread_ms=0):
    """Runs the load generator; returns its JSON plus the system under test's CPU seconds over the run."""
    cmd = NICE + ["taskset", "-c", LOAD_CORE, TOOL, "load", "--port", str(port), "--concurrency", str(concurrency),
           "--streams", str(streams), "--model", model, "--max-tokens", str(max_tokens), "--prompt-seed", str(seed),
           "--stall-ms", str(stall_ms), "--spread-ms", str(spread_ms)]
    if stages:
        cmd += ["--stages", ",".join(map(str, stages))]
    cpu0 = sut.cpu() if sut else 0.0
    tick0 = cpu_seconds_stat(sut.pid) if sut else 0.0
    user0 = cpu_seconds_stat(sut.pid, user_only=True) if sut else 0.0
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    result = None
    for line in proc.stdout:
        if line.startswith("STAGE"):
            fields = dict(kv.split("=") for kv in line.split()[2:])
            on_stage(int(fields["open"]))
            proc.stdin.write("\n")
            proc.stdin.flush()
        elif line.startswith("{"):
            result = json.loads(line)
    proc.wait()
    if result is None:
        raise SystemExit(f"run.py: the load generator failed ({' '.join(cmd)})")
    if sut:
        result["sut_cpu_s"] = sut.cpu() - cpu0
        result["sut_cpu_s_stat"] = cpu_seconds_stat(sut.pid) - tick0
        # User-space time alone: on loopback the kernel's TCP receive path of the peer runs in the
        # sender's send() and is charged to it, the same per chunk for every system under test.
        result["sut_user_s"] = cpu_seconds_stat(sut.pid, user_only=True) - user0
    return result


def med(values):
    return statistics.median(values) if values else float("nan")


def table(title, header, rows):
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row) + " |")
    sys.stdout.flush()


def slope(points):
    """Least-squares slope of (x, y) points."""
    n = len(points)
    if n < 2:
        return float("nan")
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else float("nan")


def lost(r):
    return r["streams"] - r["ok"]


def section_overhead():
    levels = [(1, 2), (20, 40)] if args.quick else [(1, 10), (100, 300), (1000, 2000)]
    fastapi_levels = levels if args.quick else [(1, 10), (100, 300), (1000, 1000)]
    up = upstream()
    gw = gateway("--no-cache", "--upstream", f"http://127.0.0.1:{up.port}/v1")
    fa = fastapi(up) if 2 in SECTIONS else None
    runs = {}
    try:
        for _ in range(args.repeat):
            for i, (c, n) in enumerate(levels):
                # Spread: the C connections start evenly over one stream's duration (640 ms), so C
                # streams are open at any time and requests arrive evenly: the steady state. Burst:
                # all C requests in the same instant, then in waves (the worst case for TTFT).
                runs.setdefault(("direct", c), []).append(load(up.port, c, n, sut=up, spread_ms=SPREAD_MS))
                runs.setdefault(("gateway", c), []).append(load(gw.port, c, n, sut=gw, spread_ms=SPREAD_MS))
                if c > 1:
                    runs.setdefault(("direct-burst", c), []).append(load(up.port, c, n, sut=up))
                    runs.setdefault(("gateway-burst", c), []).append(load(gw.port, c, n, sut=gw))
                if fa:
                    fc, fn = fastapi_levels[i]
                    runs.setdefault(("fastapi", fc), []).append(load(fa.port, fc, fn, sut=fa, spread_ms=SPREAD_MS))
    finally:
        stop_all()
    RESULTS["overhead"] = {f"{k[0]}@{k[1]}": v for k, v in runs.items()}

    def fig(kind, c, f):
        return med([f(r) for r in runs[(kind, c)]])

    rows = []
    for c, n in levels:
        for arrivals, suffix in (("spread", ""), ("burst", "-burst")):
            if ("gateway" + suffix, c) not in runs:
                continue
            dk, gk = "direct" + suffix, "gateway" + suffix
            d50 = fig(dk, c, lambda r: r["ttft_ms"]["p50"]); d99 = fig(dk, c, lambda r: r["ttft_ms"]["p99"])
            g50 = fig(gk, c, lambda r: r["ttft_ms"]["p50"]); g99 = fig(gk, c, lambda r: r["ttft_ms"]["p99"])
            e50 = fig(gk, c, lambda r: r["e2e_ms"]["p50"]) - fig(dk, c, lambda r: r["e2e_ms"]["p50"])
            e99 = fig(gk, c, lambda r: r["e2e_ms"]["p99"]) - fig(dk, c, lambda r: r["e2e_ms"]["p99"])
            cpu = fig(gk, c, lambda r: r["sut_cpu_s"] / r["ok"] * 1000 if r["ok"] else float("nan"))
            lg = fig(gk, c, lambda r: r["cpu_s"] / r["wall_s"])
            bad = sum(lost(r) for r in runs[(gk, c)] + runs[(dk, c)])
            rows.append([c, arrivals, n, d50, d99, g50, g99, g50 - d50, g99 - d99, e50, e99, cpu, lg, bad])
    table("1. Overhead: direct to the upstream vs through llmfast-gateway (cache off), ms",
          ["streams at once", "arrivals", "streams", "direct TTFT p50", "direct TTFT p99", "gateway TTFT p50", "gateway TTFT p99",
           "added TTFT p50", "added TTFT p99", "added e2e p50", "added e2e p99", "gateway CPU-s / 1000 streams",
           "load generator CPU (cores)", "lost/stalled"], rows)
    if not fa:
        return
    rows = []
    for i, (c, n) in enumerate(levels):
        fc = fastapi_levels[i][0]
        d99 = fig("direct", c, lambda r: r["ttft_ms"]["p99"])
        g99 = fig("gateway", c, lambda r: r["ttft_ms"]["p99"])
        f99 = fig("fastapi", fc, lambda r: r["ttft_ms"]["p99"])
        gcpu = fig("gateway", c, lambda r: r["sut_cpu_s"] / r["ok"] * 1000 if r["ok"] else float("nan"))
        fcpu = fig("fastapi", fc, lambda r: r["sut_cpu_s"] / r["ok"] * 1000 if r["ok"] else float("nan"))
        guser = fig("gateway", c, lambda r: r["sut_user_s"] / r["ok"] * 1000 if r["ok"] else float("nan"))
        fuser = fig("fastapi", fc, lambda r: r["sut_user_s"] / r["ok"] * 1000 if r["ok"] else float("nan"))
        fbad = sum(lost(r) for r in runs[("fastapi", fc)])
        rows.append([c, gcpu, fcpu, fcpu / gcpu if gcpu else float("nan"), guser, fuser,
                     fuser / guser if guser else float("nan"), g99 - d99, f99 - d99, fbad])
    table("2. llmfast-gateway vs FastAPI + uvicorn (uvloop, httptools, 1 worker) + httpx, same upstream and load",
          ["streams at once", "gateway CPU-s / 1000 streams", "FastAPI CPU-s / 1000 streams", "CPU ratio (FastAPI / gateway)",
           "gateway user CPU-s / 1000", "FastAPI user CPU-s / 1000", "user CPU ratio", "gateway added TTFT p99 (ms)", "FastAPI added TTFT p99 (ms)", "FastAPI lost/stalled"], rows)


def ramp(sut, port, stages, **kw):
    points = [(0, sut.rss())]

    def sample(open_streams):
        time.sleep(0.3)  # let the stage's buffers settle
        points.append((open_streams, sut.rss()))

    r = load(port, stages[-1], stages[-1], stages=stages, on_stage=sample, sut=sut, **kw)
    r["rss_points"] = points
    r["kib_per_stream"] = slope(points[1:] if len(points) > 2 else points)
    return r


def section_concurrency():
    rows = []
    sim_stages = [20, 40] if args.quick else [2000, 4000, 6000, 8000, 10000]
    # 0.05x real time: 260 ms per token, 100 tokens: each stream stays open about 27 s.
    gw = gateway("--no-cache", "--sim-batching", "off", "--sim-time-scale", "0.05" if not args.quick else "1")
    try:
        r = ramp(gw, gw.port, sim_stages, model="llmfast-sim", max_tokens=8 if args.quick else 100, stall_ms=5000)
    finally:
        stop_all()
    RESULTS["concurrency_sim"] = r
    rows.append(["simulated backend (off, 260 ms/token)", sim_stages[-1], r["ok"], r["lost"] + r["non_200"] + r["connect_failed"],
                 r["stalled"], r["kib_per_stream"], r["rss_points"][-1][1] / 1024, r["ttft_ms"]["p99"], r["max_gap_ms"]["max"]])
    pass_stages = [20, 40] if args.quick else [1000, 2000, 3000, 4000]
    up = upstream(tokens=64, interval_ms=250 if not args.quick else 10)
    gw = gateway("--no-cache", "--upstream", f"http://127.0.0.1:{up.port}/v1")
    try:
        r = ramp(gw, gw.port, pass_stages, stall_ms=5000)
    finally:
        stop_all()
    RESULTS["concurrency_passthrough"] = r
    rows.append(["pass-through (64 tokens, 250 ms apart)", pass_stages[-1], r["ok"], r["lost"] + r["non_200"] + r["connect_failed"],
                 r["stalled"], r["kib_per_stream"], r["rss_points"][-1][1] / 1024, r["ttft_ms"]["p99"], r["max_gap_ms"]["max"]])
    table("3. Concurrency: streams held open at once, memory per stream (slope of the gateway's VmRSS over open streams)",
          ["backend", "streams at once", "complete", "lost", "stalled", "KiB per stream", "RSS at peak (MiB)",
           "TTFT p99 (ms)", "largest gap between two chunks (ms)"], rows)


def section_cache():
    n = 3 if args.quick else 20
    up = upstream()
    gw = gateway("--upstream", f"http://127.0.0.1:{up.port}/v1")
    try:
        miss = load(gw.port, 1, n, seed=7, sut=gw)
        hit = load(gw.port, 1, n, seed=7, sut=gw)
        hits = gw.metric("llmfast_cache_hits_total")
    finally:
        stop_all()
    RESULTS["cache"] = {"miss": miss, "hit": hit, "hits_counted": hits}
    table(f"4. The response cache: {n} identical deterministic streams as misses, then again as hits (one at a time)",
          ["", "TTFT p50 (ms)", "TTFT p99 (ms)", "total p50 (ms)", "total p99 (ms)", "hits counted by /metrics"],
          [["miss (upstream: 64 tokens, 10 ms apart)", miss["ttft_ms"]["p50"], miss["ttft_ms"]["p99"], miss["e2e_ms"]["p50"], miss["e2e_ms"]["p99"], ""],
           ["hit, replayed as a stream", hit["ttft_ms"]["p50"], hit["ttft_ms"]["p99"], hit["e2e_ms"]["p50"], hit["e2e_ms"]["p99"], int(hits)]])


def section_batching():
    clients, per = (8, 2) if args.quick else (64, 4)
    modes = [("off: every request its own simulated GPU", ["--sim-batching", "off"]),
             ("off, one request at a time (--max-running 1)", ["--sim-batching", "off", "--max-running", "1"]),
             ("static (DynamicBatcher, max batch 64)", ["--sim-batching", "static", "--sim-max-batch", "64"]),
             ("continuous (ContinuousScheduler, 64 sequences)", ["--sim-batching", "continuous", "--sim-max-batch", "64"])]
    rows = []
    RESULTS["batching"] = {}
    for name, flags in modes:
        gw = gateway("--no-cache", "--sim-time-scale", "10", *flags)  # 10x real time: 1.3 ms per decode step
        try:
            r = load(gw.port, clients, clients * per, model="llmfast-sim", max_tokens=32, sut=gw)
        finally:
            stop_all()
        RESULTS["batching"][name] = r
        rows.append([name, r["ok"] / r["wall_s"], r["ok"] * 32 / r["wall_s"], r["ttft_ms"]["p99"], r["e2e_ms"]["p50"], r["e2e_ms"]["p99"],
                     lost(r)])
    table(f"5. The simulated backend through the gateway, {clients} concurrent clients x {per} requests of 32 tokens (10x real time)",
          ["batching", "requests/s", "tokens/s", "TTFT p99 (ms)", "latency p50 (ms)", "latency p99 (ms)", "lost"], rows)


try:
    print(f"cores: upstream + load generator on {LOAD_CORE}, system under test on {SUT_CORE}; nice {args.nice}; "
          f"nofile {hard}; load average before: {' '.join(RESULTS['uptime_before'])}")
    if SECTIONS & {1, 2}:
        section_overhead()
    if 3 in SECTIONS:
        section_concurrency()
    if 4 in SECTIONS:
        section_cache()
    if 5 in SECTIONS:
        section_batching()
finally:
    stop_all()
RESULTS["uptime_after"] = open("/proc/loadavg").read().split()[:3]
print(f"\nload average after: {' '.join(RESULTS['uptime_after'])}")
if args.json:
    with open(args.json, "w") as f:
        json.dump(RESULTS, f, indent=1)
