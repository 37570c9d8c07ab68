#!/usr/bin/env python3
"""Calls a scopegate route with payload encryption, using joserfc and the standard library.

usage: client_example.py PROXY_URL TOKEN CLIENT_PRIVATE_KEY_PEM

The request body is encrypted to the proxy's public key (from its JWKS); the response comes
back encrypted to the app's public key (registered in the policy under payload_encryption)
and is decrypted with the matching private key.
"""
import json
import sys
import urllib.request

from joserfc import jwe
from joserfc.jwk import KeySet, RSAKey

ALGORITHMS = ["RSA-OAEP-256", "A256GCM"]  # what scopegate uses; joserfc wants them named

proxy_url, token, private_key_file = sys.argv[1:4]

# 1. Fetch the proxy's public encryption keys and pick its RSA key.
with urllib.request.urlopen(f"{proxy_url}/.well-known/scopegate/jwks.json", timeout=10) as resp:
    jwks = KeySet.import_key_set(json.load(resp))
proxy_key = next(k for k in jwks.keys if k.alg == "RSA-OAEP-256")

# 2. Encrypt the JSON request to it; "cty" tells the proxy what to hand the API.
payload = json.dumps({"botId": "st-1234", "message": "hello"}).encode()
header = {"alg": "RSA-OAEP-256", "enc": "A256GCM", "cty": "application/json", "kid": proxy_key.kid}
body = jwe.encrypt_compact(header, payload, proxy_key, algorithms=ALGORITHMS)

# 3. Send it with the app's token.
request = urllib.request.Request(
    f"{proxy_url}/enc",  # a route with `encryption: supported`
    data=body.encode(),
    method="POST",
    headers={"auth": token, "Content-Type": "application/jose", "Accept": "application/jose"},
)
with urllib.request.urlopen(request, timeout=10) as resp:
    answer = resp.read()

# 4. Decrypt the response with the app's private key.
with open(private_key_file, "rb") as f:
    my_key = RSAKey.import_key(f.read())
plaintext = jwe.decrypt_compact(answer, my_key, algorithms=ALGORITHMS).plaintext
print(json.dumps(json.loads(plaintext), indent=2))
