#!/usr/bin/env python3
"""Inputs of the load benchmark, written into a work directory.

    gen.py WORKDIR REPO_ROOT

writes
    policy.yaml       the policy the load targets use: an `auth: [none]` route, a JWT/API-key
                      route, one HS256 app (inline secret), one RS256 app (the repository's
                      test key), 100 API keys
    policy-big.yaml   the same plus 10,000 HS256 apps and 100,000 API keys (startup, RSS, and
                      the big-policy API-key run)
    policy-big.json   policy-big.yaml as JSON (the form a generator would write; JSON is YAML)
    creds.env         HS_SECRET, HS_TOKEN, RS_TOKEN, API_KEY, BIG_API_KEY (shell syntax)
    hs-tokens.txt     1,024 distinct HS256 tokens, one per line (each with its own `jti`), for
                      the run in which no token repeats soon enough to be found in a cache

Tokens are signed here with joserfc, an implementation independent of scopegate's, and
live for two hours (longer than any run).
"""

import hashlib
import json
import sys
import time
import warnings
from pathlib import Path

from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

HS_SECRET = "load-bench-secret-0123456789abcdef-0123456789"
SCOPE = "bots:read"
SMALL_KEYS = 100
BIG_APPS = 10_000
BIG_KEYS = 100_000


def api_key(i: int) -> str:
    return f"sk_live_load_{i:08d}"


def sha256_hex(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


HEAD = f"""version: 1
scopes:
  {SCOPE}: View bots
  bots:write: Create and update bots
routes:
  - {{ id: open, methods: [GET], path: /open, auth: [none] }}
  - {{ id: bot-read, methods: [GET], path: "/v1/bots/{{botId}}", auth: [jwt, api_key], scopes: [{SCOPE}], resource: {{ kind: bots, param: botId }} }}
apps:
  - {{ client_id: load-hs256, algorithms: [HS256], secret: {{ value: "{HS_SECRET}" }}, scopes: [{SCOPE}], resources: {{ bots: ["*"] }} }}
  - {{ client_id: load-rs256, algorithms: [RS256], public_key_file: "{{rsa_pub}}", scopes: [{SCOPE}], resources: {{ bots: ["*"] }} }}
"""


def app_line(i: int) -> str:
    return (
        f"  - {{ client_id: app-{i:05d}, algorithms: [HS256], "
        f'secret: {{ value: "{HS_SECRET}-{i}" }}, scopes: [{SCOPE}], '
        f'resources: {{ bots: ["st-{i}"] }} }}\n'
    )


def key_line(i: int) -> str:
    return (
        f"  - {{ id: key-{i:06d}, sha256: {sha256_hex(api_key(i))}, "
        f'scopes: [{SCOPE}], resources: {{ bots: ["*"] }} }}\n'
    )


def write_policy(path: Path, rsa_pub: Path, apps: int, keys: int) -> None:
    with path.open("w") as f:
        f.write(HEAD.replace("{rsa_pub}", str(rsa_pub)))
        for i in range(apps):
            f.write(app_line(i))
        f.write("api_keys:\n")
        for i in range(keys):
            f.write(key_line(i))


def write_policy_json(path: Path, rsa_pub: Path, apps: int, keys: int) -> None:
    """The same policy as `write_policy`, as JSON."""
    grant = lambda items: {"scopes": [SCOPE], "resources": {"bots": items}}
    policy = {
        "version": 1,
        "scopes": {SCOPE: "View bots", "bots:write": "Create and update bots"},
        "routes": [
            {"id": "open", "methods": ["GET"], "path": "/open", "auth": ["none"]},
            {"id": "bot-read", "methods": ["GET"], "path": "/v1/bots/{botId}",
             "auth": ["jwt", "api_key"], "scopes": [SCOPE],
             "resource": {"kind": "bots", "param": "botId"}},
        ],
        "apps": [
            {"client_id": "load-hs256", "algorithms": ["HS256"],
             "secret": {"value": HS_SECRET}, **grant(["*"])},
            {"client_id": "load-rs256", "algorithms": ["RS256"],
             "public_key_file": str(rsa_pub), **grant(["*"])},
        ] + [
            {"client_id": f"app-{i:05d}", "algorithms": ["HS256"],
             "secret": {"value": f"{HS_SECRET}-{i}"}, **grant([f"st-{i}"])}
            for i in range(apps)
        ],
        "api_keys": [
            {"id": f"key-{i:06d}", "sha256": sha256_hex(api_key(i)), **grant(["*"])}
            for i in range(keys)
        ],
    }
    path.write_text(json.dumps(policy, separators=(",", ":")))


ROTATING_TOKENS = 1024


def token(alg: str, app_id: str, key, **extra) -> str:
    now = int(time.time())
    claims = {"appId": app_id, "sub": "load-user", "iat": now, "exp": now + 7200, "scope": SCOPE}
    return jwt.encode({"alg": alg, "typ": "JWT"}, {**claims, **extra}, key)


def main() -> None:
    work, repo = Path(sys.argv[1]), Path(sys.argv[2]).resolve()
    keys = repo / "tests/fixtures/keys"
    rsa_pub = keys / "app-rsa.pub.pem"
    write_policy(work / "policy.yaml", rsa_pub, 0, SMALL_KEYS)
    write_policy(work / "policy-big.yaml", rsa_pub, BIG_APPS, BIG_KEYS)
    write_policy_json(work / "policy-big.json", rsa_pub, BIG_APPS, BIG_KEYS)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # joserfc warns about oct keys it did not generate
        hs_key = OctKey.import_key(HS_SECRET)
        hs = token("HS256", "load-hs256", hs_key)
        rotating = [token("HS256", "load-hs256", hs_key, jti=f"load-{i}")
                    for i in range(ROTATING_TOKENS)]
        rs = token("RS256", "load-rs256", RSAKey.import_key((keys / "app-rsa.key.pem").read_text()))
    (work / "hs-tokens.txt").write_text("\n".join(rotating) + "\n")
    (work / "creds.env").write_text(
        f"HS_SECRET='{HS_SECRET}'\n"
        f"HS_TOKEN='{hs}'\n"
        f"RS_TOKEN='{rs}'\n"
        f"API_KEY='{api_key(SMALL_KEYS - 1)}'\n"
        f"BIG_API_KEY='{api_key(BIG_KEYS - 1)}'\n"
    )


if __name__ == "__main__":
    main()
