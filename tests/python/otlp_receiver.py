"""A real OTLP trace receiver for the integration tests: the edge exports its spans here.

It decodes `ExportTraceServiceRequest`s with the official generated classes of the
`opentelemetry-proto` package, over OTLP/HTTP (`POST /v1/traces`, protobuf or JSON body,
optionally gzip) and/or OTLP/gRPC (`TraceService/Export`, via grpcio), and appends one
JSON line per received span to `--out`, with the request's headers (or gRPC metadata)
so a test can check e.g. the collector auth header.

    python3 otlp_receiver.py --out spans.jsonl [--http-port N] [--grpc-port M]

Port 0 picks a free port. Once bound it prints one line on stdout:
`{"ready": true, "http_port": N, "grpc_port": M}` (null for a transport not asked for).
Runs until SIGTERM/SIGINT.
"""

import argparse
import base64
import gzip
import json
import signal
import sys
import threading
import zlib
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

_out_lock = threading.Lock()
_out_path = ""


def any_value(v):
    """An OTLP AnyValue as a plain Python value."""
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return attrs(v.kvlist_value.values)
    if which == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, which)


def attrs(kvs):
    return {kv.key: any_value(kv.value) for kv in kvs}


def span_record(span, resource, scope, via, headers):
    return {
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex(),
        "name": span.name,
        "kind": trace_pb2.Span.SpanKind.Name(span.kind),
        "start_ns": span.start_time_unix_nano,
        "end_ns": span.end_time_unix_nano,
        "attributes": attrs(span.attributes),
        "status": {
            "code": trace_pb2.Status.StatusCode.Name(span.status.code),
            "message": span.status.message,
        },
        "events": [
            {"name": e.name, "time_ns": e.time_unix_nano, "attributes": attrs(e.attributes)}
            for e in span.events
        ],
        "links": [
            {"trace_id": l.trace_id.hex(), "span_id": l.span_id.hex(), "attributes": attrs(l.attributes)}
            for l in span.links
        ],
        "resource": resource,
        "scope": scope,
        "via": via,
        "headers": headers,
    }


def record(request, via, headers):
    """Append one JSON line per span of `request` to the output file; the span count."""
    lines = []
    for rs in request.resource_spans:
        resource = attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            for span in ss.spans:
                lines.append(json.dumps(span_record(span, resource, ss.scope.name, via, headers)))
    with _out_lock, open(_out_path, "a", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")
        f.flush()
    return len(lines)


def _hex_ids_to_base64(obj):
    """OTLP/JSON spells trace and span ids in hex; protobuf's JSON mapping wants base64."""
    if isinstance(obj, dict):
        for key, val in obj.items():
            if key in ("traceId", "spanId", "parentSpanId") and isinstance(val, str):
                obj[key] = base64.b64encode(bytes.fromhex(val)).decode()
            else:
                _hex_ids_to_base64(val)
    elif isinstance(obj, list):
        for item in obj:
            _hex_ids_to_base64(item)


class OtlpHttpHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reply(self, status, body, ctype):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self._body()
        if self.path.split("?")[0] != "/v1/traces":
            self._reply(404, b"not found", "text/plain")
            return
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        encoding = self.headers.get("Content-Encoding", "").strip().lower()
        request = trace_service_pb2.ExportTraceServiceRequest()
        try:
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            elif encoding not in ("", "identity"):
                raise ValueError(f"unsupported Content-Encoding {encoding!r}")
            if ctype == "application/json":
                doc = json.loads(body)
                _hex_ids_to_base64(doc)
                json_format.ParseDict(doc, request, ignore_unknown_fields=True)
            elif ctype == "application/x-protobuf":
                request.ParseFromString(body)
            else:
                self._reply(415, b"unsupported content type", "text/plain")
                return
        except Exception as e:  # a bad body is the client's fault: 400, keep serving
            self._reply(400, f"cannot decode: {e}".encode(), "text/plain")
            return
        headers = {}
        for name, value in self.headers.items():
            name = name.lower()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        record(request, "http", headers)
        response = trace_service_pb2.ExportTraceServiceResponse()
        if ctype == "application/json":
            self._reply(200, json_format.MessageToJson(response).encode(), "application/json")
        else:
            self._reply(200, response.SerializeToString(), "application/x-protobuf")

    def log_message(self, fmt, *args):
        sys.stderr.write("otlp_receiver http: " + (fmt % args) + "\n")


class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(self, request, context):
        headers = {}
        for key, value in context.invocation_metadata():
            if isinstance(value, bytes):
                value = value.hex()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        record(request, "grpc", headers)
        return trace_service_pb2.ExportTraceServiceResponse()


def main():
    global _out_path
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="JSON lines file, one line per span")
    parser.add_argument("--http-port", type=int, help="OTLP/HTTP port on 127.0.0.1 (0: any)")
    parser.add_argument("--grpc-port", type=int, help="OTLP/gRPC port on 127.0.0.1 (0: any)")
    args = parser.parse_args()
    if args.http_port is None and args.grpc_port is None:
        parser.error("give --http-port and/or --grpc-port")
    _out_path = args.out
    open(_out_path, "a").close()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    http_server = grpc_server = None
    ready = {"ready": True, "http_port": None, "grpc_port": None}
    if args.http_port is not None:
        http_server = ThreadingHTTPServer(("127.0.0.1", args.http_port), OtlpHttpHandler)
        http_server.daemon_threads = True
        ready["http_port"] = http_server.server_address[1]
        threading.Thread(target=http_server.serve_forever, args=(0.1,), daemon=True).start()
    if args.grpc_port is not None:
        grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(), grpc_server)
        port = grpc_server.add_insecure_port(f"127.0.0.1:{args.grpc_port}")
        if port == 0:
            sys.exit(f"cannot bind gRPC port {args.grpc_port}")
        grpc_server.start()
        ready["grpc_port"] = port
    print(json.dumps(ready), flush=True)

    while not stop.wait(0.2):
        pass
    if http_server is not None:
        http_server.shutdown()
        http_server.server_close()
    if grpc_server is not None:
        grpc_server.stop(grace=0.2).wait()


if __name__ == "__main__":
    main()
