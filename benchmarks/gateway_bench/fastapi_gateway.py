#!/usr/bin/python3
"""The baseline of the gateway benchmark: the same streaming pass-through written the way a competent
user writes it with FastAPI + uvicorn + httpx (the chapter's stack, and the stack of the most used
Python LLM gateway).

- uvicorn with uvloop and httptools, ONE worker process (the gateway under test also runs on one
  core: it is pinned there and given one event-loop thread), access log off.
- One shared httpx.AsyncClient with a connection pool large enough for the benchmark's concurrency
  (httpx's default pool of 100 connections would queue streams at 1,000) and keep-alive to the
  upstream; no timeouts that could fire during a run.
- The upstream's bytes are forwarded as they arrive (`aiter_raw`, no re-encoding), as the gateway does.
- Client disconnect: Starlette's StreamingResponse watches for `http.disconnect` and cancels the
  generator; leaving the `async with client.stream(...)` block closes the upstream response, so the
  upstream stream IS cancelled when the client goes away (the gateway does the same).

    /usr/bin/python3 fastapi_gateway.py --port 8001 --upstream http://127.0.0.1:8000/v1
"""
import argparse

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

parser = argparse.ArgumentParser()
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--upstream", required=True, help="base URL including /v1")
parser.add_argument("--max-connections", type=int, default=20000)
args = parser.parse_args()

app = FastAPI()
client = httpx.AsyncClient(
    base_url=args.upstream,
    timeout=httpx.Timeout(None),
    limits=httpx.Limits(max_connections=args.max_connections, max_keepalive_connections=args.max_connections),
)


@app.post("/v1/chat/completions")
async def chat_completions(request: Request):
    body = await request.body()
    headers = {"content-type": "application/json"}
    upstream_request = client.build_request("POST", "/chat/completions", content=body, headers=headers)
    upstream = await client.send(upstream_request, stream=True)
    if upstream.status_code != 200 or not upstream.headers.get("content-type", "").startswith("text/event-stream"):
        content = await upstream.aread()
        await upstream.aclose()
        return JSONResponse(status_code=upstream.status_code, content=httpx.Response(200, content=content).json())

    async def forward():
        try:
            async for piece in upstream.aiter_raw():
                yield piece
        finally:
            await upstream.aclose()  # also on a client disconnect (cancellation): the upstream stream ends

    return StreamingResponse(forward(), media_type="text/event-stream")


if __name__ == "__main__":
    uvicorn.run(app, host=args.host, port=args.port, workers=1, loop="uvloop", http="httptools",
                access_log=False, log_level="warning", backlog=8192)
