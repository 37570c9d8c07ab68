# Test-only helper for crate::jose::jwe interop tests: runs JWE operations with
# joserfc (Python) on requests read as JSON from stdin, prints a JSON list.
import sys, json, base64
from joserfc import jwe
from joserfc.jwk import RSAKey, ECKey, OctKey
ALGS = ["RSA-OAEP-256", "RSA-OAEP", "ECDH-ES+A256KW", "ECDH-ES+A128KW", "dir", "A256GCM", "A128GCM"]
def key(item):
    if "shared" in item:
        return OctKey.import_key(base64.urlsafe_b64decode(item["shared"] + "=="))
    return {"RSA": RSAKey, "EC": ECKey}[item["kty"]].import_key(item["pem"].encode())
def run(req):
    out = []
    for item in req:
        k = key(item)
        if item["op"] == "decrypt":
            data = item["jwe"]
            if data.lstrip().startswith("{"):
                obj = jwe.decrypt_json(json.loads(data), k, algorithms=ALGS)
            else:
                obj = jwe.decrypt_compact(data, k, algorithms=ALGS)
            out.append(obj.plaintext.hex())
        else:
            pt = bytes.fromhex(item["plaintext"])
            hdr = {"alg": item["alg"], "enc": item["enc"]}
            if item["ser"] == "compact":
                out.append(jwe.encrypt_compact(hdr, pt, k, algorithms=ALGS))
            else:
                aad = item.get("aad")
                obj = jwe.FlattenedJSONEncryption({"enc": item["enc"]}, pt, unprotected=item.get("unprotected"), aad=aad.encode() if aad else None)
                obj.add_recipient({"alg": item["alg"]})
                out.append(json.dumps(jwe.encrypt_json(obj, k, algorithms=ALGS)))
    return out
print(json.dumps(run(json.load(sys.stdin))))
