#!/usr/bin/env python3
"""Sign people in at the edge's OAuth authorization server as fast as it goes: for
tests/bench-oauth.sh.

One dynamic registration, then --n whole sign-ins (GET /authorize, POST the API key,
POST the consent, POST /token with the PKCE verifier), --threads at a time, each over
its own keep-alive HTTPS connection with the certificate checked against --ca. Prints
`sign-ins/s N` and writes the last access token to --token-out. Standard library only.
Key from MCP_BENCH_KEY. Exit status 1 if any step failed.
"""
import argparse
import base64
import hashlib
import http.client
import json
import os
import re
import ssl
import sys
import threading
import time
import urllib.parse

VERIFIER = "bench-verifier-of-at-least-forty-three-characters-0123456789"
CALLBACK = "http://127.0.0.1:9/callback"


def challenge():
    digest = hashlib.sha256(VERIFIER.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def field(html, name):
    m = re.search(r'name="%s" value="([^"]*)"' % name, html)
    if not m:
        raise RuntimeError("no %s field in: %s" % (name, html[:300]))
    return m.group(1).replace("&amp;", "&")


class Client:
    def __init__(self, host, port, ctx):
        self.conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=30)

    def req(self, method, path, body=None, headers=None):
        self.conn.request(method, path, body=body, headers=headers or {})
        r = self.conn.getresponse()
        return r, r.read().decode("utf-8", "replace")


def sign_in(c, client_id, resource, key):
    q = urllib.parse.urlencode({
        "response_type": "code", "client_id": client_id, "redirect_uri": CALLBACK,
        "code_challenge": challenge(), "code_challenge_method": "S256",
        "state": "s", "resource": resource,
    })
    r, html = c.req("GET", "/authorize?" + q)
    if r.status != 200:
        raise RuntimeError("authorize %d %s" % (r.status, html[:200]))
    cookie = r.getheader("set-cookie").split(";")[0]
    form = urllib.parse.urlencode({"request": field(html, "request"), "csrf": field(html, "csrf"), "api_key": key})
    hdr = {"content-type": "application/x-www-form-urlencoded", "cookie": cookie}
    r, html = c.req("POST", "/authorize/key", form, hdr)
    if r.status != 200:
        raise RuntimeError("sign-in %d %s" % (r.status, html[:200]))
    form = urllib.parse.urlencode({"consent": field(html, "consent"), "csrf": field(html, "csrf"), "decision": "approve"})
    r, _ = c.req("POST", "/authorize/consent", form, hdr)
    location = r.getheader("location") or ""
    code = urllib.parse.parse_qs(urllib.parse.urlparse(location).query).get("code", [None])[0]
    if r.status != 303 or not code:
        raise RuntimeError("consent %d %s" % (r.status, location))
    form = urllib.parse.urlencode({
        "grant_type": "authorization_code", "code": code, "client_id": client_id,
        "redirect_uri": CALLBACK, "code_verifier": VERIFIER,
    })
    r, body = c.req("POST", "/token", form, {"content-type": "application/x-www-form-urlencoded"})
    if r.status != 200:
        raise RuntimeError("token %d %s" % (r.status, body[:200]))
    return json.loads(body)["access_token"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--resource", required=True)
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--token-out")
    a = p.parse_args()
    key = os.environ["MCP_BENCH_KEY"]
    ctx = ssl.create_default_context(cafile=a.ca)
    c = Client(a.host, a.port, ctx)
    r, body = c.req("POST", "/register", json.dumps({"client_name": "bench", "redirect_uris": [CALLBACK]}),
                    {"content-type": "application/json"})
    if r.status != 201:
        print("register failed: %d %s" % (r.status, body), file=sys.stderr)
        return 1
    client_id = json.loads(body)["client_id"]
    token = [None]
    failed = []
    per = a.n // a.threads

    def run():
        cl = Client(a.host, a.port, ctx)
        try:
            for _ in range(per):
                token[0] = sign_in(cl, client_id, a.resource, key)
        except Exception as e:  # noqa: BLE001 - reported below
            failed.append(str(e))

    threads = [threading.Thread(target=run) for _ in range(a.threads)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    if failed:
        print("failed: " + failed[0], file=sys.stderr)
        return 1
    print("sign-ins/s %.1f (%d sign-ins, %d at a time, %.2f s)" % (per * a.threads / elapsed, per * a.threads, a.threads, elapsed))
    if a.token_out:
        with open(a.token_out, "w") as f:
            f.write(token[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
