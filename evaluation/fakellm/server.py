"""The fake model server: OpenAI chat completions over SSE, answering from scripted scenarios.

    python -m evaluation.fakellm --port 18080 --scenarios evaluation/scenarios [--log FILE]

OpenClaw sends only ``POST /v1/chat/completions`` with ``stream: true``. The scenario is chosen
by its prompt: the latest *real* user message (OpenClaw appends internal-context user messages
after tool results; those are skipped) must contain the scenario's prompt. The step is the number
of assistant tool-call messages after that user message, so the server keeps no state and a
retried request gets the same answer. Unknown prompts get a short plain-text reply.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from evaluation.fakellm.scenario import Scenario, ToolCall, load_scenarios

__all__ = ["Reply", "choose_reply", "sse_chunks", "FakeModelServer", "main"]

INTERNAL_MARKER = "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>"
MODEL_ID = "fake-model"
UNKNOWN_REPLY = "I have no scripted answer for this prompt."
ARG_CHUNK_CHARS = 48      # tool-call arguments are streamed in pieces, as real models do
TOOL_RESULT_CHARS = 2000  # how much of the latest tool result a request log entry keeps

log = logging.getLogger("casa.eval.fakellm")


def _text(content: Any) -> str:
    """Message content as text: a string, or a list of {type: text, text} parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _last_real_user(messages: list[dict[str, Any]]) -> int:
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if m.get("role") == "user" and INTERNAL_MARKER not in _text(m.get("content")):
            return i
    return -1


def last_tool_result(messages: list[dict[str, Any]]) -> str | None:
    """The text of the latest tool result after the latest real user message (None before any).

    What the runtime told the model its tool did (OpenClaw's exec result: the command's output,
    ``(Command exited with code N)``, a timeout or signal): the request log keeps it so a harness
    can tell a command that failed from one that ran."""
    u = _last_real_user(messages)
    for m in reversed(messages[u + 1:]):
        if m.get("role") == "tool":
            return _text(m.get("content"))[-TOOL_RESULT_CHARS:]
    return None


class Reply:
    """What to answer: a tool call, or final text."""

    def __init__(self, scenario_id: str | None, step: int, call: ToolCall | None, text: str) -> None:
        self.scenario_id = scenario_id
        self.step = step
        self.call = call
        self.text = text


def choose_reply(scenarios: list[Scenario], messages: list[dict[str, Any]]) -> Reply:
    """Pick the scenario by prompt and the step by counting earlier tool calls (pure)."""
    u = _last_real_user(messages)
    prompt = _text(messages[u].get("content")) if u >= 0 else ""
    matching = [s for s in scenarios if s.prompt and s.prompt in prompt]
    if not matching:
        return Reply(None, 0, None, UNKNOWN_REPLY)
    scenario = max(matching, key=lambda s: len(s.prompt))
    step = sum(1 for m in messages[u + 1:] if m.get("role") == "assistant" and m.get("tool_calls"))
    if step < len(scenario.script):
        return Reply(scenario.id, step, scenario.script[step], "")
    return Reply(scenario.id, step, None, scenario.final)


def _chunk(cid: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()),
            "model": MODEL_ID, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def sse_chunks(reply: Reply) -> list[bytes]:
    """The SSE body for one reply, ending with ``data: [DONE]``."""
    cid = "chatcmpl-" + uuid.uuid4().hex[:24]
    out = [_chunk(cid, {"role": "assistant", "content": ""})]
    if reply.call is not None:
        args = json.dumps(reply.call.args)
        call_id = "call_" + uuid.uuid4().hex[:20]
        out.append(_chunk(cid, {"tool_calls": [{"index": 0, "id": call_id, "type": "function",
                                                "function": {"name": reply.call.tool, "arguments": ""}}]}))
        for i in range(0, len(args), ARG_CHUNK_CHARS):
            out.append(_chunk(cid, {"tool_calls": [{"index": 0, "function": {
                "arguments": args[i:i + ARG_CHUNK_CHARS]}}]}))
        out.append(_chunk(cid, {}, "tool_calls"))
    else:
        out.append(_chunk(cid, {"content": reply.text}))
        out.append(_chunk(cid, {}, "stop"))
    usage = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": MODEL_ID,
             "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}}
    out.append(b"data: " + json.dumps(usage).encode() + b"\n\n")
    out.append(b"data: [DONE]\n\n")
    return out


class FakeModelServer(ThreadingHTTPServer):
    """ThreadingHTTPServer holding the scenarios and an optional request log."""

    daemon_threads = True

    def __init__(self, addr: tuple[str, int], scenarios: list[Scenario], log_path: Path | None) -> None:
        super().__init__(addr, _Handler)
        self.scenarios = scenarios
        self.log_path = log_path
        self.log_lock = threading.Lock()

    def record(self, entry: dict[str, Any]) -> None:
        if self.log_path is None:
            return
        with self.log_lock, open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")


class _Handler(BaseHTTPRequestHandler):
    server: FakeModelServer
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:   # quiet: requests go to --log
        pass

    def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, json.dumps({"object": "list", "data": [
                {"id": MODEL_ID, "object": "model", "owned_by": "casa-eval"}]}).encode())
        else:
            self._send(404, b'{"error": "not found"}')

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
            messages = request["messages"]
            if not isinstance(messages, list):
                raise TypeError("messages is not a list")
        except (ValueError, KeyError, TypeError) as exc:
            self._send(400, json.dumps({"error": f"bad request: {exc}"}).encode())
            return
        reply = choose_reply(self.server.scenarios, messages)
        self.server.record({"ts_ns": time.time_ns(), "scenario": reply.scenario_id, "step": reply.step,
                            "tool": reply.call.tool if reply.call else None,
                            "tools_offered": [t.get("function", {}).get("name") for t in request.get("tools") or []],
                            "messages": len(messages), "tool_result": last_tool_result(messages)})
        self._stream(reply) if request.get("stream") else self._complete(reply)

    def _stream(self, reply: Reply) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        for chunk in sse_chunks(reply):
            self.wfile.write(chunk)
            self.wfile.flush()
        self.close_connection = True

    def _complete(self, reply: Reply) -> None:
        msg: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if reply.call is not None:
            msg["tool_calls"] = [{"id": "call_" + uuid.uuid4().hex[:20], "type": "function",
                                  "function": {"name": reply.call.tool, "arguments": json.dumps(reply.call.args)}}]
        body = {"id": "chatcmpl-x", "object": "chat.completion", "created": int(time.time()), "model": MODEL_ID,
                "choices": [{"index": 0, "message": msg,
                             "finish_reason": "tool_calls" if reply.call else "stop"}]}
        self._send(200, json.dumps(body).encode())


def serve(port: int, scenario_dirs: list[Path], log_path: Path | None) -> FakeModelServer:
    """Start the server on 127.0.0.1:port in a daemon thread (port 0 picks a free one)."""
    scenarios = [s for d in scenario_dirs for s in load_scenarios(d)]
    srv = FakeModelServer(("127.0.0.1", port), scenarios, log_path)
    threading.Thread(target=srv.serve_forever, name="fakellm", daemon=True).start()
    return srv


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m evaluation.fakellm", description=__doc__.splitlines()[0],
                                epilog="examples:\n  python -m evaluation.fakellm --port 18080 "
                                       "--scenarios evaluation/scenarios",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=18080)
    p.add_argument("--scenarios", type=Path, action="append", default=[])
    p.add_argument("--log", type=Path, default=None, help="append one JSON line per request")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    dirs = args.scenarios or [Path(__file__).resolve().parent.parent / "scenarios"]
    srv = serve(args.port, dirs, args.log)
    log.info("fake model listening | addr=127.0.0.1:%d scenarios=%d", srv.server_address[1], len(srv.scenarios))
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    srv.shutdown()
    return 0
