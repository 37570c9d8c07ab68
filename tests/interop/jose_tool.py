#!/usr/bin/env python3
"""JOSE helper CLI for scopegate's integration tests.

This tool exists so scopegate is tested against an *independent* JOSE
implementation: every token and JWE the Rust tests feed to the proxy (and every
JWE the proxy returns) is produced/checked by Python `joserfc` + `cryptography`,
never by scopegate's own code. Deliberately broken tokens (alg "none",
HS/RS algorithm confusion, headers joserfc refuses) are assembled by hand.

I/O contract: inputs via flags and stdin, results on stdout with NO trailing
newline (tokens, JSON, or raw plaintext bytes); exit 0 on success, 1 with a
message on stderr on failure (2 for usage errors). `decrypt` additionally
prints `header: {...}` (the protected header, one line) on stderr.

Usage (see `jose_tool.py SUBCOMMAND -h`):
  sign --alg ALG (--key PRIV_PEM | --secret TEXT) --claims JSON [--header JSON]
  sign-none --claims JSON [--header JSON]
  sign-confusion --pubkey PUB_PEM --claims JSON [--alg HS256|HS384|HS512]
  encrypt --alg ALG --enc ENC (--key PUB_PEM | --shared-file PATH) [--cty TEXT] [--kid KID] [--json | --json-native]  < plaintext
  decrypt (--key PRIV_PEM | --shared-file PATH) [--expect-alg ALG] [--expect-enc ENC]  < jwe
  jwe-token --jws TOKEN --key PROXY_PUB_PEM --alg ALG [--kid KID] [--zip]
  jwk --pub PEM
  verify-jwks --jwks JSON --token JWS --iss ISS --aud AUD   (-> {"header", "claims"})
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import sys
import warnings
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jwe, jwk, jws
from joserfc.errors import JoseError
from joserfc.jwe import JWERegistry
from joserfc.jws import JWSRegistry
from joserfc.registry import JWS_HEADER_REGISTRY, HeaderParameter

warnings.simplefilter("ignore")  # joserfc SecurityWarnings would pollute stderr

SIGN_ALGS = ["HS256", "HS384", "HS512", "RS256", "RS384", "RS512",
             "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"]
JWE_ALGS = ["RSA-OAEP-256", "RSA-OAEP", "ECDH-ES+A256KW", "ECDH-ES+A128KW", "dir"]
JWE_ENCS = ["A256GCM", "A128GCM"]
HMAC_HASHES = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(text: str) -> bytes:
    text = text.strip()
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def load_key(path: str):
    """PEM private (PKCS#8/traditional) or public (SPKI) key -> joserfc key."""
    data = Path(path).read_bytes()
    try:
        obj = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        obj = serialization.load_pem_public_key(data)
    if isinstance(obj, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        kty = "RSA"
    elif isinstance(obj, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        kty = "EC"
    else:
        kty = "OKP"
    return jwk.import_key(data, kty)


def load_shared(path: str):
    return jwk.OctKey.import_key(b64u_decode(Path(path).read_text()))


def merged_header(base: dict, extra: str | None) -> dict:
    """Merge --header JSON into base; a null value removes the parameter."""
    header = {**base, **json.loads(extra or "{}")}
    return {k: v for k, v in header.items() if v is not None}


def jwe_registry() -> JWERegistry:
    reg = JWERegistry(algorithms=JWE_ALGS + JWE_ENCS + ["DEF"], strict_check_header=False)
    reg.max_ciphertext_length = 64 * 1024 * 1024  # default 64 KiB is too small for bodies
    return reg


# ---------------------------------------------------------------- signing
def cmd_sign(a) -> str:
    header = merged_header({"alg": a.alg, "typ": "JWT"}, a.header)
    payload = dumps(json.loads(a.claims))
    if a.alg.startswith("HS"):
        if a.secret is None:
            raise ValueError(f"{a.alg} needs --secret")
        key = jwk.OctKey.import_key(a.secret.encode("utf-8"))
    else:
        if a.key is None:
            raise ValueError(f"{a.alg} needs --key PRIVATE_PEM")
        key = load_key(a.key)
    if header.get("alg") == a.alg:
        extra = {k: HeaderParameter("test extra", lambda v: None)
                 for k in header if k not in JWS_HEADER_REGISTRY}
        reg = JWSRegistry(header_registry=extra, algorithms=[a.alg], strict_check_header=False)
        try:
            return jws.serialize_compact(header, payload, key, registry=reg)
        except JoseError:
            pass  # e.g. crit naming an absent parameter: build it by hand below
    # Hand-built header, still correctly signed with --alg by joserfc's algorithm model.
    signing_input = f"{b64u(dumps(header))}.{b64u(payload)}".encode()
    sig = JWSRegistry.algorithms[a.alg].sign(signing_input, key)
    return f"{signing_input.decode()}.{b64u(sig)}"


def cmd_sign_none(a) -> str:
    header = merged_header({"alg": "none", "typ": "JWT"}, a.header)
    return f"{b64u(dumps(header))}.{b64u(dumps(json.loads(a.claims)))}."


def cmd_sign_confusion(a) -> str:
    """HS* token keyed with the verbatim bytes of a public-key PEM file."""
    secret = Path(a.pubkey).read_bytes()
    signing_input = f"{b64u(dumps({'alg': a.alg, 'typ': 'JWT'}))}.{b64u(dumps(json.loads(a.claims)))}"
    sig = hmac.new(secret, signing_input.encode(), HMAC_HASHES[a.alg]).digest()
    return f"{signing_input}.{b64u(sig)}"


# ---------------------------------------------------------------- encryption
def compact_to_flattened(token: str) -> dict:
    """RFC 7516 §7.2.2 flattened JSON carrying exactly the compact JWE's parts."""
    protected, ek, iv, ciphertext, tag = token.split(".")
    out = {"protected": protected, "encrypted_key": ek, "iv": iv, "ciphertext": ciphertext, "tag": tag}
    if not ek:
        del out["encrypted_key"]  # dir: member absent when the encrypted key is empty
    return out


def cmd_encrypt(a) -> str:
    key = load_shared(a.shared_file) if a.shared_file else load_key(a.key)
    protected = {"alg": a.alg, "enc": a.enc}
    if a.cty is not None:
        protected["cty"] = a.cty
    if a.kid is not None:
        protected["kid"] = a.kid
    plaintext = sys.stdin.buffer.read()
    if a.json_native:  # joserfc's own JSON encoder: puts e.g. "epk" in the unprotected "header"
        obj = jwe.FlattenedJSONEncryption(protected, plaintext)
        obj.add_recipient({})
        out = jwe.encrypt_json(obj, key, registry=jwe_registry())
        if not out.get("header"):
            out.pop("header", None)
        if not out.get("encrypted_key"):
            out.pop("encrypted_key", None)
        return dumps(out).decode()
    token = jwe.encrypt_compact(protected, plaintext, key, registry=jwe_registry())
    return dumps(compact_to_flattened(token)).decode() if a.json else token


def cmd_decrypt(a) -> bytes:
    key = load_shared(a.shared_file) if a.shared_file else load_key(a.key)
    data = sys.stdin.buffer.read().strip()
    if data.startswith(b"{"):
        obj = jwe.decrypt_json(json.loads(data), key, registry=jwe_registry())
        effective = obj.recipients[0].headers()
    else:
        obj = jwe.decrypt_compact(data, key, registry=jwe_registry())
        effective = obj.headers()
    print("header: " + json.dumps(obj.protected, separators=(",", ":")), file=sys.stderr, flush=True)
    for name, want in (("alg", a.expect_alg), ("enc", a.expect_enc)):
        if want is not None and effective.get(name) != want:
            raise ValueError(f"expected {name}={want!r}, got {effective.get(name)!r}")
    return obj.plaintext


def cmd_jwe_token(a) -> str:
    protected = {"alg": a.alg, "enc": "A256GCM", "cty": "JWT"}
    if a.kid is not None:
        protected["kid"] = a.kid
    if a.zip:
        protected["zip"] = "DEF"  # joserfc deflates the plaintext; the proxy must reject this
    return jwe.encrypt_compact(protected, a.jws.strip().encode(), load_key(a.key), registry=jwe_registry())


def cmd_verify_jwks(a) -> str:
    """Verifies a JWS the way an upstream would: key by `kid` from a published JWKS, then
    `iss`, `aud` and `exp` checked by joserfc's claims registry."""
    from joserfc import jwt
    from joserfc.jwk import KeySet

    keys = KeySet.import_key_set(json.loads(a.jwks))
    token = jwt.decode(a.token, keys, algorithms=["ES256", "EdDSA"])
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": a.iss},
        aud={"essential": True, "value": a.aud},
        exp={"essential": True},
    ).validate(token.claims)
    return dumps({"header": token.header, "claims": token.claims}).decode()


def cmd_jwk(a) -> str:
    key = load_key(a.pub)
    return dumps({**key.as_dict(private=False), "kid": key.thumbprint()}).decode()


# ---------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("sign", help="compact JWS (JWT)")
    s.add_argument("--alg", required=True, choices=SIGN_ALGS)
    s.add_argument("--key", help="PEM private key (RS*/PS*/ES*/EdDSA)")
    s.add_argument("--secret", help="HS* key: UTF-8 bytes of this text")
    s.add_argument("--claims", required=True, help="JSON claims")
    s.add_argument("--header", help="JSON merged into the header (null removes)")
    s.set_defaults(func=cmd_sign)

    s = sub.add_parser("sign-none", help='unsigned token, alg "none"')
    s.add_argument("--claims", required=True)
    s.add_argument("--header", help="JSON merged into the header (null removes)")
    s.set_defaults(func=cmd_sign_none)

    s = sub.add_parser("sign-confusion", help="HS* token keyed with a public-key PEM file")
    s.add_argument("--pubkey", required=True)
    s.add_argument("--claims", required=True)
    s.add_argument("--alg", default="HS256", choices=list(HMAC_HASHES))
    s.set_defaults(func=cmd_sign_confusion)

    s = sub.add_parser("encrypt", help="JWE of stdin bytes")
    s.add_argument("--alg", required=True, choices=JWE_ALGS)
    s.add_argument("--enc", required=True, choices=JWE_ENCS)
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--key", help="recipient PEM public key")
    g.add_argument("--shared-file", help="file with base64url symmetric key (dir)")
    s.add_argument("--cty")
    s.add_argument("--kid")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help="flattened JSON, all header params protected")
    g.add_argument("--json-native", action="store_true",
                   help="flattened JSON from joserfc's JSON encoder (epk in per-recipient 'header')")
    s.set_defaults(func=cmd_encrypt)

    s = sub.add_parser("decrypt", help="JWE (compact or JSON) on stdin -> plaintext")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--key", help="PEM private key")
    g.add_argument("--shared-file", help="file with base64url symmetric key (dir)")
    s.add_argument("--expect-alg")
    s.add_argument("--expect-enc")
    s.set_defaults(func=cmd_decrypt)

    s = sub.add_parser("jwe-token", help="wrap a JWS in a compact JWE (enc A256GCM, cty JWT)")
    s.add_argument("--jws", required=True)
    s.add_argument("--key", required=True, help="proxy PEM public key")
    s.add_argument("--alg", required=True, choices=[x for x in JWE_ALGS if x != "dir"])
    s.add_argument("--kid")
    s.add_argument("--zip", action="store_true", help='add "zip":"DEF" (deflated plaintext)')
    s.set_defaults(func=cmd_jwe_token)

    s = sub.add_parser("verify-jwks", help="verify a JWS against a JWKS document")
    s.add_argument("--jwks", required=True, help="JWKS JSON text")
    s.add_argument("--token", required=True)
    s.add_argument("--iss", required=True)
    s.add_argument("--aud", required=True)
    s.set_defaults(func=cmd_verify_jwks)

    s = sub.add_parser("jwk", help="public JWK of a PEM key (debugging)")
    s.add_argument("--pub", required=True)
    s.set_defaults(func=cmd_jwk)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        out = args.func(args)
    except Exception as exc:  # noqa: BLE001 - any failure is reported, exit 1
        print(f"jose_tool {args.cmd}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(out if isinstance(out, bytes) else out.encode())
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
