#!/usr/bin/env python3
"""A request refused before its body is read, then another on the same keep-alive connection.

    refused_body.py PORT [N]

Against a proxy running benches/soak's policy (lib.sh): N times, on a new connection, a POST
/v1/bots/st-1 with the API key (which lacks bots:write: 403 insufficient_scope) and a 2-byte
body, then a GET on the same connection. Counts the GETs that fail and the 403s that said
`Connection: close`. Then the same with an empty body, for comparison.
"""
import http.client
import sys

port, n = int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 200
auth = {"authorization": "Bearer sk_live_soak_0000000001"}
for body in (b"{}", b""):
    failed = close = 0
    for _ in range(n):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("POST", "/v1/bots/st-1", body=body, headers=auth)
        r = c.getresponse()
        r.read()
        assert r.status == 403, r.status
        close += (r.getheader("connection") or "").lower() == "close"
        try:
            c.request("GET", "/v1/bots/st-1", headers=auth)
            c.getresponse().read()
        except (OSError, http.client.HTTPException):
            failed += 1
        c.close()
    print(f"403 to a POST with a {len(body)}-byte body, then a GET on the same connection: "
          f"{failed} of {n} GETs failed; {close} of the 403s said Connection: close")
