"""A local stand-in for the public S3 bucket: static files over HTTP on 127.0.0.1.

Supports ``Range`` requests (206 + Content-Range), the S3 ``ListObjectsV2`` query
(``?list-type=2&prefix=...&delimiter=/``) and fault injection: cut the connection after
N bytes of a file (once), serve corrupted bytes, or refuse everything.
"""

from __future__ import annotations

import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape


class BucketServer:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.cut_after: dict[str, int] = {}  # relative path -> bytes to send before dropping (once)
        self.corrupt: set[str] = set()  # relative paths served with one byte flipped
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                rel = urllib.parse.unquote(url.path.lstrip("/"))
                server.requests.append((rel, self.headers.get("Range")))
                query = urllib.parse.parse_qs(url.query)
                if query.get("list-type") == ["2"]:
                    return self._list(query.get("prefix", [""])[0])
                path = (server.root / rel).resolve()
                if not path.is_file() or not path.is_relative_to(server.root.resolve()):
                    return self._send(404, b"<Error><Code>NoSuchKey</Code></Error>")
                body = path.read_bytes()
                if rel in server.corrupt:
                    body = bytes([body[0] ^ 0xFF]) + body[1:]
                start = 0
                rng = self.headers.get("Range")
                if rng:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(body):
                        return self._send(416, b"")
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                payload = body[start:]
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                cut = server.cut_after.pop(rel, None)
                if cut is not None and cut < len(payload):
                    self.wfile.write(payload[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(payload)

            def _list(self, prefix: str):
                base = server.root / prefix
                items = sorted(base.iterdir()) if base.is_dir() else []
                keys = [f"<Contents><Key>{escape(prefix + p.name)}</Key></Contents>" for p in items if p.is_file()]
                dirs = [f"<CommonPrefixes><Prefix>{escape(prefix + p.name)}/</Prefix></CommonPrefixes>" for p in items if p.is_dir()]
                xml = (
                    '<?xml version="1.0" encoding="UTF-8"?>'
                    '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                    f"<Name>test</Name><Prefix>{escape(prefix)}</Prefix><IsTruncated>false</IsTruncated>"
                    + "".join(keys) + "".join(dirs) + "</ListBucketResult>"
                )
                self._send(200, xml.encode())

            def _send(self, status: int, body: bytes):
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
