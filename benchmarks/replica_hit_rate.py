#!/usr/bin/python3
"""Hit rate of llmfast-gateway's response cache with 1 replica vs 4 replicas behind round-robin, with and
without the shared tier (--redis), on the demo's workload (docs/cache.md, "Shared tier (Redis)").

    cmake --preset default && cmake --build --preset default --target llmfast-demo llmfast-gateway -j2
    /usr/bin/python3 benchmarks/replica_hit_rate.py [--quick] [--time-scale F] [--json FILE] [-- demo options]

The request sequence is the demo's (`llmfast-demo --dump-gateway-workload`: 240 requests, 115 new, 61
exact repeats, 64 paraphrases, seed 42), sent as the demo's semantic-cache run through the gateway sends
it (stream false, temperature 0, the gateway's simulated model on the demo's latency model, one
simulated GPU per gateway, the cache's semantic tier at the demo's threshold). 16 client threads take
the next request of the sequence; request i goes to replica i mod N (round-robin in the client; one
keep-alive connection per client and replica). Four runs, each on fresh gateways (cold caches) and a
fresh key prefix on one redis-server (127.0.0.1, free port, no persistence):

    1 replica | 1 replica + Redis | 4 replicas | 4 replicas + Redis

Hit rate = answers whose x-llmfast-cache header says exact or semantic, over the answers (the demo's
"hit rate"); "no backend" adds the coalesced ones (an identical request was in flight on that replica
and its answer was shared). Every answer is checked against the simulated model's exact text. Goal: 4
shared replicas within 2 points of 1 replica. The timing of a run (how many repeats arrive while their
first request is still being answered) depends on the machine, so each run is reported as measured.
--quick: the demo's --quick sequence (40 requests), about a second; CI runs that (after its demo step
built both programs) to check it runs and every answer is right, and judges no figure.
"""
import argparse
import contextlib
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "examples", "gateway", "tests"))
import harness  # noqa: E402  (Gateway, RedisServer: free loopback ports, always stopped)

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--build", default=os.path.join(ROOT, "build", "default"), help="the CMake build directory")
ap.add_argument("--quick", action="store_true", help="the demo's --quick sequence: 40 requests, 8 clients")
ap.add_argument("--time-scale", type=float, default=100.0, help="simulated time runs F times faster [100]")
ap.add_argument("--replicas", type=int, default=4)
ap.add_argument("--redis-timeout-ms", type=int, help="the gateways' --redis-timeout-ms (default: theirs, 4 ms)")
ap.add_argument("--json", help="also write the results here")
ap.add_argument("demo_args", nargs="*", help="more llmfast-demo options (after --)")
args = ap.parse_args()

DEMO = os.path.join(args.build, "examples", "llmfast-demo")
GATEWAY = os.path.join(args.build, "examples", "gateway", "llmfast-gateway")
for path in (DEMO, GATEWAY):
    if not os.access(path, os.X_OK):
        sys.exit("replica_hit_rate.py: %s is missing: cmake --build --preset default --target llmfast-demo llmfast-gateway" % path)
harness.GATEWAY = GATEWAY


def load_workload(tmp):
    path = os.path.join(tmp, "workload.json")
    cmd = [DEMO, "--dump-gateway-workload", path, "--time-scale", str(args.time_scale), "--no-progress"]
    if args.quick:
        cmd.insert(1, "--quick")  # before --time-scale, which it would reset to 100
    subprocess.run(cmd + args.demo_args, check=True, stdout=subprocess.DEVNULL, timeout=120)
    with open(path) as f:
        return json.load(f)


def metric_sum(text, name):
    """The sum of a metric's samples (every label set); 0 when absent."""
    return sum(float(v) for v in re.findall(r"^%s(?:\{[^}]*\})? (\S+)$" % re.escape(name), text, re.M))


def run(workload, tmp, replicas, redis, prefix):
    config_path = os.path.join(tmp, "gateway.json")
    with open(config_path, "w") as f:
        json.dump(workload["config"], f)
    flags = [config_path if a == workload["config_placeholder"] else a for a in workload["flags"]]
    if redis is not None:
        flags += ["--redis", redis.url, "--redis-prefix", prefix]
        if args.redis_timeout_ms:
            flags += ["--redis-timeout-ms", str(args.redis_timeout_ms)]
    requests = workload["requests"]
    records = [None] * len(requests)
    with contextlib.ExitStack() as stack:
        gateways = [stack.enter_context(harness.Gateway(*flags)) for _ in range(replicas)]
        next_index = [0]
        lock = threading.Lock()

        def client():
            connections = [http.client.HTTPConnection("127.0.0.1", g.port, timeout=120) for g in gateways]
            try:
                while True:
                    with lock:
                        i = next_index[0]
                        next_index[0] += 1
                    if i >= len(requests):
                        return
                    r = requests[i]
                    conn = connections[i % replicas]
                    try:
                        conn.request("POST", "/v1/chat/completions", body=r["body"].encode(), headers={"Content-Type": "application/json"})
                        resp = conn.getresponse()
                        raw = resp.read()
                        text = None
                        if resp.status == 200:
                            text = json.loads(raw)["choices"][0]["message"]["content"]
                        records[i] = {"status": resp.status, "cache": resp.getheader("x-llmfast-cache", ""),
                                      "intact": resp.status == 200 and text == r["expected"], "kind": r["kind"]}
                    except Exception as e:  # noqa: BLE001 - counted as an error; a new connection next time
                        records[i] = {"status": 0, "cache": "", "intact": False, "kind": r["kind"], "error": str(e)}
                        conn.close()
            finally:
                for c in connections:
                    c.close()

        started = time.monotonic()
        threads = [threading.Thread(target=client) for _ in range(workload["clients"])]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.monotonic() - started
        metrics = [g.request("GET", "/metrics")[2].decode() for g in gateways]
    answered = [r for r in records if r and r["status"] == 200]
    count = lambda kind: sum(1 for r in answered if r["cache"] == kind)  # noqa: E731
    out = {"replicas": replicas, "shared": redis is not None, "requests": len(requests), "answered": len(answered),
           "intact": sum(1 for r in answered if r["intact"]), "errors": len(requests) - len(answered),
           "exact": count("exact"), "semantic": count("semantic"), "coalesced": count("coalesced"), "miss": count("miss"),
           "seconds": round(seconds, 2)}
    n = max(1, len(answered))
    out["hit_rate"] = 100.0 * (out["exact"] + out["semantic"]) / n
    out["no_backend_rate"] = 100.0 * (out["exact"] + out["semantic"] + out["coalesced"]) / n
    # What the replicas' /metrics say about the shared tier (summed over the replicas).
    for name in ("llmfast_cache_shared_hits_total", "llmfast_cache_shared_unavailable_total", "llmfast_cache_shared_applied_total",
                 "llmfast_redis_unavailable_total"):
        out[name] = sum(metric_sum(m, name) for m in metrics)
    by_kind = {}
    for r in answered:
        k = by_kind.setdefault(r["kind"], {"requests": 0, "hits": 0})
        k["requests"] += 1
        k["hits"] += r["cache"] in ("exact", "semantic")
    out["by_kind"] = by_kind
    return out


def main():
    with tempfile.TemporaryDirectory(prefix="llmfast-replicas-") as tmp:
        workload = load_workload(tmp)
        kinds = {}
        for r in workload["requests"]:
            kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
        print("workload: %d requests (%s), %d clients, time scale %g; redis-server on 127.0.0.1, no persistence"
              % (len(workload["requests"]), ", ".join("%d %s" % (v, k) for k, v in sorted(kinds.items())),
                 workload["clients"], workload["time_scale"]), flush=True)
        results = []
        with harness.RedisServer() as redis:
            for replicas, shared in ((1, False), (1, True), (args.replicas, False), (args.replicas, True)):
                prefix = "bench-%d-%d-%d" % (os.getpid(), replicas, shared)
                r = run(workload, tmp, replicas, redis if shared else None, prefix)
                r["label"] = "%d replica%s%s" % (replicas, "" if replicas == 1 else "s", " + Redis" if shared else "")
                results.append(r)
                print("  %-22s done in %.1f s" % (r["label"], r["seconds"]), flush=True)
    print()
    print("| run | hit rate (exact + semantic) | no backend call (+ coalesced) | exact | semantic | coalesced | miss "
          "| Redis GET hits | entries from the feed | Redis unavailable | intact / answered | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print("| %s | %.1f %% | %.1f %% | %d | %d | %d | %d | %d | %d | %d | %d / %d | %d |"
              % (r["label"], r["hit_rate"], r["no_backend_rate"], r["exact"], r["semantic"], r["coalesced"], r["miss"],
                 r["llmfast_cache_shared_hits_total"], r["llmfast_cache_shared_applied_total"],
                 r["llmfast_cache_shared_unavailable_total"], r["intact"], r["answered"], r["errors"]))
    one, shared4 = results[0], results[3]
    gap = one["hit_rate"] - shared4["hit_rate"]
    gap_nb = one["no_backend_rate"] - shared4["no_backend_rate"]
    print()
    if args.quick:
        print("(--quick: %d requests are too few to judge the goal; it checks that everything runs)" % one["requests"])
    print("goal (%d shared replicas within 2 points of 1 replica): hit rate %.1f vs %.1f (%+.1f points): %s; "
          "no backend call %.1f vs %.1f (%+.1f points): %s"
          % (args.replicas, shared4["hit_rate"], one["hit_rate"], -gap, "met" if gap <= 2 else "NOT met",
             shared4["no_backend_rate"], one["no_backend_rate"], -gap_nb, "met" if gap_nb <= 2 else "NOT met"))
    bad = sum(r["errors"] + r["answered"] - r["intact"] for r in results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"quick": args.quick, "time_scale": args.time_scale, "runs": results}, f, indent=1)
    if bad:
        print("%d requests failed or were answered wrongly" % bad)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
