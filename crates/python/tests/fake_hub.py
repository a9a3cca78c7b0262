"""A small Hugging Face Hub on 127.0.0.1, for running the README's snippets
without the network: the URL layout and headers hf-hub's client relies on
(the same as tests/hub_server.rs on the Rust side, without the faults)."""

import hashlib
import http.server
import json
import threading


class FakeHub:
    """Serves `{repo: {file name: bytes}}` at one commit, as branch `main`."""

    COMMIT = "1" * 40

    def __init__(self, repos):
        self.repos = {
            repo: {name: (data, hashlib.sha256(data).hexdigest()) for name, data in files.items()}
            for repo, files in repos.items()
        }
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                hub._route(self)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def _send(self, req, status, body=b"", headers=()):
        req.send_response(status)
        for k, v in headers:
            req.send_header(k, v)
        req.send_header("Content-Length", str(len(body)))
        req.send_header("Connection", "close")
        req.end_headers()
        req.wfile.write(body)

    def _route(self, req):
        parts = req.path.split("?")[0].strip("/").split("/")
        if len(parts) == 6 and parts[:2] == ["api", "models"] and parts[4] == "revision":
            repo = self.repos.get(f"{parts[2]}/{parts[3]}")
            if repo is None:
                return self._send(req, 401, b"{}", [("X-Error-Code", "RepoNotFound")])
            siblings = [
                {"rfilename": n, "size": len(d), "lfs": {"sha256": h, "size": len(d), "pointerSize": 134}}
                for n, (d, h) in repo.items()
            ]
            body = json.dumps({"id": f"{parts[2]}/{parts[3]}", "sha": self.COMMIT, "siblings": siblings})
            return self._send(req, 200, body.encode(), [("Content-Type", "application/json")])
        if len(parts) == 5 and parts[2] == "resolve":
            repo = self.repos.get(f"{parts[0]}/{parts[1]}", {})
            if parts[4] not in repo:
                return self._send(req, 404, b"{}", [("X-Error-Code", "EntryNotFound")])
            data, sha = repo[parts[4]]
            return self._send(req, 302, b"", [
                ("Location", f"{self.url}/cdn/{parts[0]}/{parts[1]}/{self.COMMIT}/{parts[4]}"),
                ("X-Repo-Commit", self.COMMIT),
                ("X-Linked-Etag", f'"{sha}"'),
                ("X-Linked-Size", str(len(data))),
                ("ETag", '"' + "0" * 40 + '"'),
            ])
        if len(parts) == 5 and parts[0] == "cdn":
            repo = self.repos.get(f"{parts[1]}/{parts[2]}", {})
            if parts[4] not in repo:
                return self._send(req, 404, b"{}", [("X-Error-Code", "EntryNotFound")])
            data, sha = repo[parts[4]]
            spec = req.headers.get("Range")
            if spec and spec.startswith("bytes="):
                a, _, b = spec[len("bytes="):].partition("-")
                start = int(a or 0)
                end = min(int(b), len(data) - 1) if b else len(data) - 1
                return self._send(req, 206, data[start:end + 1], [
                    ("Content-Range", f"bytes {start}-{end}/{len(data)}"), ("ETag", f'"{sha}"')])
            return self._send(req, 200, data, [("ETag", f'"{sha}"')])
        return self._send(req, 404, b"{}", [("X-Error-Code", "NotFound")])
