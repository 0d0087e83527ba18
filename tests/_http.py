"""A local stand-in for the public S3 bucket: static files over HTTP on 127.0.0.1.

Supports ``Range`` requests (206 + Content-Range), the S3 ``ListObjectsV2`` query
(``?list-type=2&prefix=...&delimiter=/``) and fault injection: cut the connection after
N bytes of a file (once), serve corrupted bytes, or refuse everything.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape


def _serve(handler, body: bytes, *, cut: int | None = None, pause: tuple[int, float] | None = None,
           headers: dict[str, str] | None = None) -> None:
    """Answer a GET with ``body``, honouring ``Range``; optionally drop the connection after ``cut``
    bytes, or go silent for ``pause[1]`` seconds after ``pause[0]`` bytes (fault injection)."""
    start = 0
    rng = handler.headers.get("Range")
    if rng:
        start = int(rng.split("=")[1].split("-")[0])
        if start >= len(body):
            return handler._send(416, b"")
        handler.send_response(206)
        handler.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
    else:
        handler.send_response(200)
    payload = body[start:]
    handler.send_header("Content-Length", str(len(payload)))
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.end_headers()
    if cut is not None and cut < len(payload):
        handler.wfile.write(payload[:cut])
        handler.wfile.flush()
        handler.close_connection = True
        handler.connection.shutdown(socket.SHUT_RDWR)
        return
    if pause is not None and pause[0] < len(payload):
        handler.wfile.write(payload[:pause[0]])
        handler.wfile.flush()
        time.sleep(pause[1])
        handler.close_connection = True
        return
    handler.wfile.write(payload)


class BucketServer:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.cut_after: dict[str, int] = {}  # relative path -> bytes to send before dropping (once)
        self.corrupt: set[str] = set()  # relative paths served with one byte flipped
        self.stall: dict[str, float] = {}  # relative path -> seconds to wait before answering (every time)
        self.stall_after: dict[str, tuple[int, float]] = {}  # relative path -> (bytes sent, then seconds of silence)
        self.delay: float = 0.0  # seconds before every file answer (to make transfers overlap)
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
                if server.delay:
                    time.sleep(server.delay)
                if rel in server.stall:
                    time.sleep(server.stall[rel])
                body = path.read_bytes()
                if rel in server.corrupt:
                    body = bytes([body[0] ^ 0xFF]) + body[1:]
                return _serve(self, body, cut=server.cut_after.pop(rel, None), pause=server.stall_after.get(rel),
                              headers={"Accept-Ranges": "bytes"})

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

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class AllenApiServer:
    """A local stand-in for ``api.brain-map.org``: RMA SectionDataSet and StructureUnionize queries, grid zips.

    ``records`` are SectionDataSet records in the API's JSON shape (``id, failed,
    plane_of_section_id, genes: [{acronym, entrez_id, ...}], plane_of_section: {id, name}``);
    queries are answered from them honouring the gene, plane, ``start_row`` and ``num_rows``
    of the RMA criteria. ``zips`` maps SectionDataSet id -> zip bytes served at
    ``/grid_data/download/<id>``. Faults: ``statuses[id]`` = HTTP statuses to answer before
    serving (e.g. [503, 503]); ``cut_after[id]`` = bytes sent before dropping (once);
    ``corrupt_once`` = ids served with a flipped byte once; ids absent from ``zips`` get 404.
    ``max_active`` records the peak number of concurrent grid requests. ``unionizes`` maps SectionDataSet id
    -> StructureUnionize records answered to ``model::StructureUnionize`` queries page by page (honouring
    ``start_row``/``num_rows``); ``unionize_statuses`` and ``unionize_cut`` inject throttling and cut pages.
    """

    def __init__(self, records: list[dict], zips: dict[int, bytes], *, delay: float = 0.0,
                 unionizes: dict[int, list[dict]] | None = None):
        import json
        import re

        self.records = records
        self.zips = zips
        self.unionizes = unionizes or {}
        self.unionize_statuses: dict[int, list[int]] = {}  # SectionDataSet id -> statuses to answer first (each page)
        self.unionize_cut: dict[int, int] = {}  # SectionDataSet id -> bytes of a page sent before dropping (once)
        self.unionize_requests: list[tuple[int, int]] = []  # (SectionDataSet id, start_row)
        self.statuses: dict[int, list[int]] = {}
        self.cut_after: dict[int, int] = {}
        self.corrupt_once: set[int] = set()
        self.grid_requests: list[int] = []
        self.queries: list[str] = []
        self.active = 0
        self.max_active = 0
        lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                if url.path.startswith("/grid_data/download/"):
                    return self._grid(int(url.path.rsplit("/", 1)[1]))
                if url.path == "/api/v2/data/query.json":
                    crit = urllib.parse.unquote(urllib.parse.parse_qs(url.query)["criteria"][0])
                    server.queries.append(crit)
                    if crit.startswith("model::StructureUnionize"):
                        return self._unionizes(crit)
                    gene = re.search(r"genes\[acronym\$eq'([^']+)'\]", crit)
                    plane = re.search(r"plane_of_section\[name\$eq'([^']+)'\]", crit)
                    start = int(re.search(r"start_row\$eq(\d+)", crit).group(1))
                    num = int(re.search(r"num_rows\$eq(\d+)", crit).group(1))
                    hits = [r for r in server.records
                            if (not gene or r["genes"] and r["genes"][0]["acronym"] == gene.group(1))
                            and (not plane or r["plane_of_section"]["name"] == plane.group(1))]
                    hits.sort(key=lambda r: r["id"])
                    body = {"success": True, "id": 0, "start_row": start, "num_rows": len(hits[start:start + num]),
                            "total_rows": len(hits), "msg": hits[start:start + num]}
                    return self._send(200, json.dumps(body).encode(), "application/json")
                return self._send(404, b"not found")

            def _unionizes(self, crit: str):
                sds = int(re.search(r"\[section_data_set_id\$eq(\d+)\]", crit).group(1))
                start = int(re.search(r"start_row\$eq(\d+)", crit).group(1))
                num = int(re.search(r"num_rows\$eq(\d+)", crit).group(1))
                server.unionize_requests.append((sds, start))
                queued = server.unionize_statuses.get(sds)
                if queued:
                    status = queued.pop(0)
                    self.send_response(status)
                    self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", "4")
                    self.end_headers()
                    return self.wfile.write(b"busy")
                rows = server.unionizes.get(sds, [])
                body = {"success": True, "id": 0, "start_row": start, "num_rows": len(rows[start:start + num]),
                        "total_rows": len(rows), "msg": rows[start:start + num]}
                return _serve(self, json.dumps(body).encode(), cut=server.unionize_cut.pop(sds, None),
                              headers={"Content-Type": "application/json"})

            def _grid(self, sds: int):
                with lock:
                    server.grid_requests.append(sds)
                    server.active += 1
                    server.max_active = max(server.max_active, server.active)
                try:
                    if delay:
                        time.sleep(delay)
                    queued = server.statuses.get(sds)
                    if queued:
                        return self._send(queued.pop(0), b"busy")
                    if sds not in server.zips:
                        return self._send(404, b"no grid")
                    body = server.zips[sds]
                    if sds in server.corrupt_once:
                        server.corrupt_once.discard(sds)
                        mid = len(body) // 2
                        body = body[:mid] + bytes([body[mid] ^ 0xFF]) + body[mid + 1:]
                    return _serve(self, body, cut=server.cut_after.pop(sds, None), headers={"Content-Type": "application/zip"})
                finally:
                    with lock:
                        server.active -= 1

            def _send(self, status: int, body: bytes, ctype: str = "text/plain"):
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", ctype)
                self.end_headers()
                self.wfile.write(body)

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # clients hanging up mid-request are expected here
        pass
