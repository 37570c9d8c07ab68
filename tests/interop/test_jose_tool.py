#!/usr/bin/env python3
"""Self-test for jose_tool.py: run with `python3 tests/interop/test_jose_tool.py`.

Drives the CLI through subprocess exactly as the Rust tests do, and checks its
output with joserfc / hmac in-process.
"""
import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
import unittest
import warnings
from pathlib import Path

from joserfc import jwe, jwk, jws
from joserfc.jws import JWSRegistry

warnings.simplefilter("ignore")

HERE = Path(__file__).resolve().parent
TOOL = HERE / "jose_tool.py"
KEYS = HERE.parent / "fixtures" / "keys"
CLAIMS = {"sub": "user-1", "aud": "scopegate", "exp": 4102444800, "scope": "read write"}

SIGN_KEYS = {  # alg -> (private PEM, public PEM)
    **{f"{p}{n}": ("app-rsa.key.pem", "app-rsa.pub.pem") for p in ("RS", "PS") for n in (256, 384, 512)},
    "ES256": ("app-ec256.key.pem", "app-ec256.pub.pem"),
    "ES384": ("app-ec384.key.pem", "app-ec384.pub.pem"),
    "EdDSA": ("app-ed25519.key.pem", "app-ed25519.pub.pem"),
}
ENC_KEYS = {  # JWE alg -> (public PEM, private PEM)
    "RSA-OAEP-256": ("client-rsa.pub.pem", "client-rsa.key.pem"),
    "RSA-OAEP": ("client-rsa.pub.pem", "client-rsa.key.pem"),
    "ECDH-ES+A256KW": ("client-ec.pub.pem", "client-ec.key.pem"),
    "ECDH-ES+A128KW": ("client-ec.pub.pem", "client-ec.key.pem"),
}


def run(*args, stdin=b"", ok=True):
    p = subprocess.run([sys.executable, str(TOOL), *args], input=stdin, capture_output=True, timeout=30)
    if ok and p.returncode != 0:
        raise AssertionError(f"jose_tool {args[0]} failed ({p.returncode}): {p.stderr.decode()}")
    return p


def key(name):
    return jwk.import_key((KEYS / name).read_bytes(), "RSA" if "rsa" in name else "OKP" if "ed25519" in name else "EC")


def parts(token):
    h, p, s = token.split(".")
    dec = lambda x: base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))  # noqa: E731
    return json.loads(dec(h)), json.loads(dec(p)), dec(s)


class SignTest(unittest.TestCase):
    def test_every_alg_verifies_with_joserfc(self):
        for alg in ["HS256", "HS384", "HS512", *SIGN_KEYS]:
            with self.subTest(alg=alg):
                if alg.startswith("HS"):
                    args, vkey = ["--secret", "client-secret-ü"], jwk.OctKey.import_key("client-secret-ü".encode())
                else:
                    args, vkey = ["--key", str(KEYS / SIGN_KEYS[alg][0])], key(SIGN_KEYS[alg][1])
                tok = run("sign", "--alg", alg, *args, "--claims", json.dumps(CLAIMS),
                          "--header", '{"kid":"k1"}').stdout.decode()
                self.assertNotIn("\n", tok)
                obj = jws.deserialize_compact(tok, vkey, algorithms=[alg])
                self.assertEqual(json.loads(obj.payload), CLAIMS)
                self.assertEqual(obj.protected, {"alg": alg, "typ": "JWT", "kid": "k1"})

    def test_wrong_key_does_not_verify(self):
        tok = run("sign", "--alg", "RS256", "--key", str(KEYS / "app-rsa.key.pem"), "--claims", "{}").stdout
        with self.assertRaises(Exception):
            jws.deserialize_compact(tok, key("app-rsa-other.pub.pem"), algorithms=["RS256"])

    def test_crit_header_hand_built_but_correctly_signed(self):
        for alg, args, vkey in [
            ("HS256", ["--secret", "s3cret"], jwk.OctKey.import_key(b"s3cret")),
            ("ES256", ["--key", str(KEYS / "app-ec256.key.pem")], key("app-ec256.pub.pem")),
        ]:
            with self.subTest(alg=alg):
                tok = run("sign", "--alg", alg, *args, "--claims", "{}", "--header",
                          '{"crit":["exp"],"typ":null}').stdout.decode()
                header, _, sig = parts(tok)
                self.assertEqual(header, {"alg": alg, "crit": ["exp"]})
                signing_input = tok.rsplit(".", 1)[0].encode()
                self.assertTrue(JWSRegistry.algorithms[alg].verify(signing_input, sig, vkey))

    def test_sign_none(self):
        tok = run("sign-none", "--claims", json.dumps(CLAIMS)).stdout.decode()
        self.assertTrue(tok.endswith("."))
        header, claims, sig = parts(tok)
        self.assertEqual((header, claims, sig), ({"alg": "none", "typ": "JWT"}, CLAIMS, b""))

    def test_sign_confusion(self):
        for alg, h in [("HS256", hashlib.sha256), ("HS512", hashlib.sha512)]:
            with self.subTest(alg=alg):
                tok = run("sign-confusion", "--pubkey", str(KEYS / "app-rsa.pub.pem"), "--alg", alg,
                          "--claims", json.dumps(CLAIMS)).stdout.decode()
                header, claims, sig = parts(tok)
                self.assertEqual((header, claims), ({"alg": alg, "typ": "JWT"}, CLAIMS))
                pem = (KEYS / "app-rsa.pub.pem").read_bytes()
                self.assertEqual(sig, hmac.new(pem, tok.rsplit(".", 1)[0].encode(), h).digest())

    def test_failures_exit_nonzero_with_message(self):
        for args in [("sign", "--alg", "HS256", "--claims", "{}"),
                     ("sign", "--alg", "RS256", "--key", "/nonexistent", "--claims", "{}"),
                     ("sign", "--alg", "RS256", "--key", str(KEYS / "app-rsa.key.pem"), "--claims", "{bad")]:
            p = run(*args, ok=False)
            self.assertEqual(p.returncode, 1, args)
            self.assertIn("error", p.stderr.decode())


class EncryptTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.shared16 = Path(cls.tmp.name) / "shared16.key"  # dir+A128GCM needs a 128-bit key
        cls.shared16.write_text(base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode())

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def key_args(self, alg, enc):
        if alg == "dir":
            f = str(KEYS / "shared.key") if enc == "A256GCM" else str(self.shared16)
            return ["--shared-file", f], ["--shared-file", f]
        pub, priv = ENC_KEYS[alg]
        return ["--key", str(KEYS / pub)], ["--key", str(KEYS / priv)]

    def test_round_trip_all_algs_encs_serializations(self):
        plaintext = os.urandom(300) + b"\n{\"x\":1}\r\n"
        for alg in [*ENC_KEYS, "dir"]:
            for enc in ["A256GCM", "A128GCM"]:
                for form in ["compact", "--json", "--json-native"]:
                    with self.subTest(alg=alg, enc=enc, form=form):
                        enc_args, dec_args = self.key_args(alg, enc)
                        extra = [] if form == "compact" else [form]
                        out = run("encrypt", "--alg", alg, "--enc", enc, *enc_args, "--cty", "application/json",
                                  "--kid", "c1", *extra, stdin=plaintext).stdout
                        if form == "compact":
                            self.assertEqual(len(out.split(b".")), 5)
                        else:
                            doc = json.loads(out)
                            self.assertTrue({"protected", "iv", "ciphertext", "tag"} <= set(doc))
                            self.assertEqual("encrypted_key" in doc, alg != "dir")
                            if form == "--json":
                                self.assertTrue(set(doc) <= {"protected", "encrypted_key", "iv", "ciphertext", "tag"})
                        p = run("decrypt", *dec_args, "--expect-alg", alg, "--expect-enc", enc, stdin=out)
                        self.assertEqual(p.stdout, plaintext)
                        header = json.loads(p.stderr.decode().split("header: ", 1)[1].splitlines()[0])
                        self.assertEqual((header["alg"], header["enc"], header["cty"], header["kid"]),
                                         (alg, enc, "application/json", "c1"))
                        if form != "--json-native" and alg.startswith("ECDH"):
                            self.assertIn("epk", header)

    def test_expectation_mismatch_fails(self):
        out = run("encrypt", "--alg", "RSA-OAEP-256", "--enc", "A256GCM", "--key", str(KEYS / "client-rsa.pub.pem"),
                  stdin=b"secret").stdout
        for flags in (["--expect-alg", "RSA-OAEP"], ["--expect-enc", "A128GCM"]):
            p = run("decrypt", "--key", str(KEYS / "client-rsa.key.pem"), *flags, stdin=out, ok=False)
            self.assertEqual(p.returncode, 1)
            self.assertEqual(p.stdout, b"")
        p = run("decrypt", "--key", str(KEYS / "client-ec.key.pem"), stdin=out, ok=False)
        self.assertEqual(p.returncode, 1)

    def test_jwe_token(self):
        jws_tok = run("sign", "--alg", "RS256", "--key", str(KEYS / "app-rsa.key.pem"),
                      "--claims", json.dumps(CLAIMS)).stdout.decode()
        reg = jwe.JWERegistry(algorithms=["RSA-OAEP-256", "ECDH-ES+A256KW", "A256GCM", "DEF"])
        for alg, name in [("RSA-OAEP-256", "proxy-jwe-rsa"), ("ECDH-ES+A256KW", "proxy-jwe-ec")]:
            for zip_ in ([], ["--zip"]):
                with self.subTest(alg=alg, zip=bool(zip_)):
                    tok = run("jwe-token", "--jws", jws_tok, "--key", str(KEYS / f"{name}.pub.pem"), "--alg", alg,
                              "--kid", "proxy-1", *zip_).stdout.decode()
                    obj = jwe.decrypt_compact(tok, key(f"{name}.key.pem"), registry=reg)
                    self.assertEqual(obj.plaintext.decode(), jws_tok)
                    h = obj.protected
                    self.assertEqual((h["alg"], h["enc"], h["cty"], h["kid"]), (alg, "A256GCM", "JWT", "proxy-1"))
                    self.assertEqual(h.get("zip"), "DEF" if zip_ else None)

    def test_jwk(self):
        doc = json.loads(run("jwk", "--pub", str(KEYS / "app-ec256.pub.pem")).stdout)
        self.assertEqual((doc["kty"], doc["crv"]), ("EC", "P-256"))
        self.assertNotIn("d", doc)


if __name__ == "__main__":
    unittest.main(verbosity=2, warnings="ignore")
