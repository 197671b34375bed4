"""DPoP proofs (RFC 9449) made by an independent implementation, for tests/tests/dpop_interop.rs.

PyJWT (with `cryptography`) signs every proof; the RFC 7638 thumbprints are computed here
from the JWK, without rmcp-authz. Prints one JSON object: the request every case is checked
against, the clock, and the cases, each with the error rmcp-authz must answer (or "ok" and
the thumbprint it must find). Usage: python dpop_proofs.py
"""

import hashlib
import json

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from dpop_common import b64, jwk_of, thumbprint

NOW = 1_765_000_000
URL = "https://mcp.example.com/mcp"
TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"


def claims(jti: str, **changes) -> dict:
    value = {
        "jti": jti,
        "htm": "POST",
        "htu": URL,
        "iat": NOW,
        "ath": b64(hashlib.sha256(TOKEN.encode()).digest()),
    }
    for name, changed in changes.items():
        if changed is None:
            value.pop(name, None)
        else:
            value[name] = changed
    return value


def proof(key, alg: str, payload: dict, header_changes=None, jwk=None) -> str:
    headers = {"typ": "dpop+jwt", "jwk": jwk if jwk is not None else jwk_of(key, alg)}
    headers.update(header_changes or {})
    return jwt.encode(payload, key, algorithm=alg, headers=headers)


def main() -> None:
    p256 = ec.generate_private_key(ec.SECP256R1())
    p384 = ec.generate_private_key(ec.SECP384R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed = ed25519.Ed25519PrivateKey.generate()
    other = ec.generate_private_key(ec.SECP256R1())
    cases = []

    def case(name, token_proof, expect, thumb=None):
        cases.append({"name": name, "proof": token_proof, "expect": expect, "jkt": thumb})

    for key, alg in [(p256, "ES256"), (p384, "ES384"), (rsa_key, "PS256"), (rsa_key, "RS256"), (ed, "EdDSA")]:
        case(f"valid {alg}", proof(key, alg, claims(f"ok-{alg}")), "ok", thumbprint(jwk_of(key, alg)))
    case("wrong htm", proof(p256, "ES256", claims("m", htm="GET")), "method")
    case("wrong htu", proof(p256, "ES256", claims("u", htu="https://mcp.example.com/other")), "url")
    case("htu with query and upper-case host", proof(p256, "ES256", claims("uq", htu="https://MCP.example.com/mcp?x=1")), "ok",
         thumbprint(jwk_of(p256, "ES256")))
    case("stale iat", proof(p256, "ES256", claims("s", iat=NOW - 3600)), "time")
    case("future iat", proof(p256, "ES256", claims("f", iat=NOW + 3600)), "time")
    case("wrong ath", proof(p256, "ES256", claims("a", ath=b64(hashlib.sha256(b"another token").digest()))), "ath")
    case("no ath", proof(p256, "ES256", claims("na", ath=None)), "ath")
    replayed = proof(p256, "ES256", claims("r"))
    case("first use", replayed, "ok", thumbprint(jwk_of(p256, "ES256")))
    case("replayed jti", replayed, "replayed")
    private = jwk_of(p256, "ES256")
    private["d"] = b64(p256.private_numbers().private_value.to_bytes(32, "big"))
    case("jwk with private members", proof(p256, "ES256", claims("p"), jwk=private), "key")
    case("alg none", jwt.encode(claims("n"), None, algorithm="none", headers={"typ": "dpop+jwt", "jwk": jwk_of(p256, "ES256")}), "algorithm")
    case("HMAC", jwt.encode(claims("h"), "a-shared-secret-of-at-least-32-bytes!!", algorithm="HS256",
                            headers={"typ": "dpop+jwt", "jwk": {"kty": "oct", "k": b64(b"a-shared-secret-of-at-least-32-bytes!!")}}), "algorithm")
    case("typ JWT", proof(p256, "ES256", claims("t"), {"typ": "JWT"}), "type")
    case("signed by another key than its jwk", proof(other, "ES256", claims("o"), jwk=jwk_of(p256, "ES256")), "signature")
    case("no jwk", jwt.encode(claims("nj"), p256, algorithm="ES256", headers={"typ": "dpop+jwt"}), "key")
    case("two parts", "eyJ0eXAiOiJkcG9wK2p3dCJ9.e30", "malformed")
    print(json.dumps({"now": NOW, "url": URL, "method": "POST", "access_token": TOKEN, "cases": cases}))


if __name__ == "__main__":
    main()
