"""A screenshot of the `tms web` page in the middle of training, taken by headless Chromium.

Serves SITE (built by `tms web --out SITE`) on 127.0.0.1, opens the page with QUERY plus autorun=1
under the flags of tests/web.rs, waits AFTER seconds of training, then saves the window as OUT and
prints the page's status line (step, ms per step, adapter). Standard library only: Chromium is driven
through the DevTools protocol over a pipe (--remote-debugging-pipe).

    python3 results/web/screenshot.py SITE OUT.png --query 'lr=0.01&batch=128' --after 120
"""

import argparse
import base64
import functools
import http.server
import json
import os
import subprocess
import tempfile
import threading
import time


class DevTools:
    """The DevTools protocol over Chromium's pipe: fd 3 carries commands, fd 4 answers, each a JSON
    message ended by a NUL byte."""

    def __init__(self, write_fd, read_fd):
        self.write_fd, self.read_fd, self.buffer, self.next_id = write_fd, read_fd, b"", 0

    def call(self, method, session=None, **params):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self.buffer:
                self.buffer += os.read(self.read_fd, 1 << 20)
            raw, self.buffer = self.buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]


class Quiet(http.server.SimpleHTTPRequestHandler):
    """Serves the site (JavaScript modules need a JavaScript MIME type) without logging requests."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript"}

    def log_message(self, *args):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site")
    parser.add_argument("out")
    parser.add_argument("--query", default="")
    parser.add_argument("--after", type=float, default=60)
    parser.add_argument("--size", default="1400,1150")
    parser.add_argument("--chromium", default="chromium")
    args = parser.parse_args()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=args.site))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/index.html?{args.query}&autorun=1"

    commands_read, commands_write = os.pipe()
    answers_read, answers_write = os.pipe()

    def pipes_as_fds_3_and_4():
        # Through fds out of the way first, in case a pipe end already is fd 3 or 4.
        high_read, high_write = os.dup2(commands_read, 100), os.dup2(answers_write, 101)
        os.dup2(high_read, 3)
        os.dup2(high_write, 4)

    with tempfile.TemporaryDirectory() as profile:
        browser = subprocess.Popen(
            [args.chromium, "--headless=new", "--no-sandbox", "--enable-unsafe-webgpu",
             "--remote-debugging-pipe", f"--window-size={args.size}", f"--user-data-dir={profile}", url],
            preexec_fn=pipes_as_fds_3_and_4, pass_fds=(3, 4),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            tools = DevTools(commands_write, answers_read)
            page = next(t for t in tools.call("Target.getTargets")["targetInfos"] if t["type"] == "page")
            session = tools.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
            time.sleep(args.after)
            status = tools.call("Runtime.evaluate", session,
                                expression="document.getElementById('status').textContent + ' | ' + document.getElementById('gpu-status').textContent")
            shot = tools.call("Page.captureScreenshot", session, format="png")
            with open(args.out, "wb") as f:
                f.write(base64.b64decode(shot["data"]))
            print(status["result"]["value"])
        finally:
            browser.kill()
            browser.wait()
            server.shutdown()


if __name__ == "__main__":
    main()
