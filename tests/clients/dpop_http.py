"""DPoP requests (RFC 9449) made by an independent implementation, for tests/tests/dpop_http.rs.

An authorization server and its DPoP clients, in Python: PyJWT (with `cryptography`) signs the
access tokens (some DPoP-bound with `cnf.jkt`) and the proofs, and the RFC 7638 thumbprints are
computed here without rmcp-authz. Given the MCP endpoint's URL, prints one JSON object: the
issuer, its signing key (PKCS#8 PEM, for the server under test to trust), and the requests,
each with its headers and the status and RFC 6750 / RFC 9449 error the server must answer.
The test sends them, in order, with a raw HTTP client. Usage: python dpop_http.py URL
"""

import hashlib
import json
import sys
import time
import uuid

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dpop_common import b64, jwk_of, thumbprint

ISSUER = "https://python-issuer.test"


def main() -> None:
    url = sys.argv[1]
    now = int(time.time())
    issuer_key = ec.generate_private_key(ec.SECP256R1())
    client = ec.generate_private_key(ec.SECP256R1())
    attacker = ec.generate_private_key(ec.SECP256R1())
    rsa_client = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    client_jkt = thumbprint(jwk_of(client, "ES256"))

    def token(jkt=None, scope="notes:read") -> str:
        claims = {"iss": ISSUER, "sub": "alice", "aud": url, "client_id": "py-agent", "scope": scope,
                  "iat": now, "exp": now + 600, "jti": str(uuid.uuid4())}
        if jkt is not None:
            claims["cnf"] = {"jkt": jkt}
        return jwt.encode(claims, issuer_key, algorithm="ES256", headers={"typ": "at+jwt"})

    bound = token(client_jkt)
    unbound = token()

    def proof(key=client, alg="ES256", access_token=bound, jwk=None, headers=None, **changes) -> str:
        claims = {"jti": str(uuid.uuid4()), "htm": "POST", "htu": url, "iat": now,
                  "ath": b64(hashlib.sha256(access_token.encode()).digest())}
        for name, changed in changes.items():
            if changed is None:
                claims.pop(name, None)
            else:
                claims[name] = changed
        header = {"typ": "dpop+jwt", "jwk": jwk if jwk is not None else jwk_of(key, alg)}
        header.update(headers or {})
        return jwt.encode(claims, key, algorithm=alg, headers=header)

    cases = []

    def case(name, headers, status, error=None, scheme=None):
        cases.append({"name": name, "headers": headers, "status": status, "error": error, "scheme": scheme})

    def dpop(access_token, *proofs):
        return [["authorization", f"DPoP {access_token}"]] + [["dpop", p] for p in proofs]

    first = proof()
    case("a bound token with its proof", dpop(bound, first), 200)
    case("the same proof again (replayed jti)", dpop(bound, first), 401, "invalid_dpop_proof", "DPoP")
    case("a bound token with a fresh proof", dpop(bound, proof()), 200)
    rsa_token = token(thumbprint(jwk_of(rsa_client, "PS256")))
    case("an RSA-bound token with its PS256 proof, ath matching", dpop(rsa_token, proof(rsa_client, "PS256", access_token=rsa_token)), 200)
    case("a bound token sent as Bearer", [["authorization", f"Bearer {bound}"]], 401, "invalid_token", "Bearer")
    case("a stolen bound token, proven with the thief's key", dpop(bound, proof(attacker)), 401, "invalid_token", "DPoP")
    odd = token(b64(hashlib.sha256(json.dumps(jwk_of(client, "ES256")).encode()).digest()))
    case("a token bound to a thumbprint hashed from non-canonical JSON", dpop(odd, proof(access_token=odd)), 401,
         "invalid_token", "DPoP")
    case("an unbound token under the DPoP scheme", dpop(unbound, proof(access_token=unbound)), 401, "invalid_token", "DPoP")
    case("an unbound token as Bearer", [["authorization", f"Bearer {unbound}"]], 200)
    case("two proof headers", dpop(bound, proof(), proof()), 401, "invalid_dpop_proof", "DPoP")
    case("no proof header", dpop(bound), 401, "invalid_dpop_proof", "DPoP")
    case("wrong htm", dpop(bound, proof(htm="GET")), 401, "invalid_dpop_proof", "DPoP")
    case("wrong htu", dpop(bound, proof(htu=url + "/other")), 401, "invalid_dpop_proof", "DPoP")
    case("htu with a query, an upper-case scheme", dpop(bound, proof(htu=url.replace("http://", "HTTP://") + "?q=1")), 200)
    case("stale iat", dpop(bound, proof(iat=now - 3600)), 401, "invalid_dpop_proof", "DPoP")
    case("future iat", dpop(bound, proof(iat=now + 3600)), 401, "invalid_dpop_proof", "DPoP")
    case("wrong ath", dpop(bound, proof(ath=b64(hashlib.sha256(b"another token").digest()))), 401, "invalid_dpop_proof", "DPoP")
    case("no ath", dpop(bound, proof(ath=None)), 401, "invalid_dpop_proof", "DPoP")
    private = jwk_of(client, "ES256")
    private["d"] = b64(client.private_numbers().private_value.to_bytes(32, "big"))
    case("a jwk with private members", dpop(bound, proof(jwk=private)), 401, "invalid_dpop_proof", "DPoP")
    none = jwt.encode({"jti": "n", "htm": "POST", "htu": url, "iat": now}, None, algorithm="none",
                      headers={"typ": "dpop+jwt", "jwk": jwk_of(client, "ES256")})
    case("alg none", dpop(bound, none), 401, "invalid_dpop_proof", "DPoP")
    secret = b"a-shared-secret-of-at-least-32-bytes!!"
    hmac = jwt.encode({"jti": "h", "htm": "POST", "htu": url, "iat": now}, secret, algorithm="HS256",
                      headers={"typ": "dpop+jwt", "jwk": {"kty": "oct", "k": b64(secret)}})
    case("HMAC", dpop(bound, hmac), 401, "invalid_dpop_proof", "DPoP")
    case("typ JWT", dpop(bound, proof(headers={"typ": "JWT"})), 401, "invalid_dpop_proof", "DPoP")
    case("a nonce this server never issued", dpop(bound, proof(nonce="bm90LWEtbm9uY2U")), 200)
    pem = issuer_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()).decode()
    print(json.dumps({"issuer": ISSUER, "issuer_key_pem": pem, "client_jkt": client_jkt,
                      "cases": cases}))


if __name__ == "__main__":
    main()
