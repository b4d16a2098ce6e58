#!/usr/bin/env python3
"""Client authentication and per-topic authorization against a real `deltacast serve`.

Tokens come from PyJWT (HS256, RS256, ES256) or are hand-built for the attacks (alg none,
HS256 signed with the RSA public key). Clients: urllib, a raw SSE reader, Python `websockets`.
Run: DELTACAST_BIN=.build/debug/deltacast python3 Tests/Security/auth_test.py
"""
import asyncio
import json
import os
import sys
import time
import unittest

import jwt
import websockets
import websockets.exceptions

sys.path.insert(0, os.path.dirname(__file__))
from harness import (ADMIN, AUDIENCE, ISSUER, SECRET, SSE, Proxy, ec_key, hs256, now, public_pem,
                     request, rsa_key, run, unsigned)

ENDPOINTS = """
endpoints:
  - path: /users/{user}/inbox
    source: publish
    allow: "params.user == claims.sub || 'support' in claims.roles"
  - path: /prices
    source: publish
    scopes: [prices:read]
  - path: /teams/{team}/board
    source: publish
    allow: "params.team in claims.teams"
  - path: /public
    source: publish
    auth: none
"""


def hs256_config(extra=""):
    return f"""
listen: 127.0.0.1:0
admin: {{ token: {ADMIN} }}
cors: {{ origins: [https://dashboard.test] }}
logging: {{ level: debug, access: true }}
auth:
  jwt: {{ algorithm: HS256, secret: "{SECRET}", issuer: "{ISSUER}", audience: {AUDIENCE}, leeway: 5s }}
  api_keys:
    - {{ key: wallboard-key-0123456789, subject: wallboard, scopes: [prices:read] }}
  expiry_grace: 1s
  ticket_ttl: 2s
{extra}
{ENDPOINTS}
"""


def get(proxy, path, token=None, headers=None):
    headers = dict(headers or {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return request(proxy.url(path), headers=headers)


class HS256Tests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.proxy = Proxy(hs256_config())
        for topic, body in [("/users/alice/inbox", {"n": 1}), ("/users/bob/inbox", {"n": 2}), ("/prices", {"p": 1}),
                            ("/teams/red/board", {"t": 1}), ("/public", {"hello": True}), ("/users/wallboard/inbox", {"w": 1})]:
            cls.proxy.publish(topic, body)

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()

    def assert_refused(self, token, status, reason, path="/users/alice/inbox"):
        code, headers, body = get(self.proxy, path, token)
        self.assertEqual(code, status, body)
        message = json.loads(body)["message"]
        self.assertIn(reason, message)
        if status == 401:
            self.assertTrue(headers["WWW-Authenticate"].startswith("Bearer realm=\"deltacast\""))
        return message

    def test_valid_token_reads_its_own_topic(self):
        code, headers, body = get(self.proxy, "/users/alice/inbox", hs256())
        self.assertEqual((code, json.loads(body)), (200, {"n": 1}))

    def test_no_token_gets_401_with_a_bearer_challenge(self):
        code, headers, body = get(self.proxy, "/users/alice/inbox")
        self.assertEqual(code, 401)
        self.assertEqual(headers["WWW-Authenticate"], "Bearer realm=\"deltacast\"")
        self.assertNotIn(b"\"n\"", body)

    def test_public_endpoint_needs_no_token(self):
        self.assertEqual(get(self.proxy, "/public")[0], 200)

    def test_forged_signature(self):
        forged = jwt.encode({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 60}, "another-secret-of-32-bytes-or-more!!", algorithm="HS256")
        self.assert_refused(forged, 401, "bad signature")

    def test_tampered_payload(self):
        header, _, signature = hs256(sub="bob").split(".")
        payload = jwt.utils.base64url_encode(json.dumps({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 60}).encode()).decode()
        self.assert_refused(f"{header}.{payload}.{signature}", 401, "bad signature")

    def test_expired(self):
        self.assert_refused(hs256(ttl=-60), 401, "expired")

    def test_expired_within_leeway_is_accepted(self):
        self.assertEqual(get(self.proxy, "/users/alice/inbox", hs256(ttl=-2))[0], 200)

    def test_not_yet_valid(self):
        self.assert_refused(hs256(nbf=now() + 600), 401, "not valid for another")

    def test_wrong_issuer(self):
        self.assert_refused(hs256(iss="https://evil.test"), 401, "issuer")

    def test_wrong_audience(self):
        self.assert_refused(hs256(aud="another-service"), 401, "audience")

    def test_audience_list_containing_ours(self):
        self.assertEqual(get(self.proxy, "/users/alice/inbox", hs256(aud=["x", AUDIENCE]))[0], 200)

    def test_missing_exp(self):
        token = jwt.encode({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE}, SECRET, algorithm="HS256")
        self.assert_refused(token, 401, "no numeric exp")

    def test_alg_none(self):
        for alg in ["none", "None", "NONE"]:
            token = unsigned({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 60}, {"alg": alg, "typ": "JWT"})
            self.assert_refused(token, 401, "alg")

    def test_other_algorithms_refused(self):
        token = jwt.encode({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 60}, SECRET, algorithm="HS512")
        self.assert_refused(token, 401, "does not match the configured HS256")

    def test_malformed_tokens(self):
        for token in ["abc", "a.b", "a.b.c.d", "!!!.###.$$$", "x" * 9000]:
            self.assertEqual(get(self.proxy, "/users/alice/inbox", token)[0], 401, token[:20])

    def test_user_a_cannot_read_user_b(self):
        message = self.assert_refused(hs256(sub="alice"), 403, "may not read", path="/users/bob/inbox")
        self.assertIn("params.user == claims.sub", message)

    def test_role_claim_grants_access(self):
        self.assertEqual(get(self.proxy, "/users/bob/inbox", hs256(sub="carol", roles=["support"]))[0], 200)

    def test_membership_in_a_claim_list(self):
        self.assertEqual(get(self.proxy, "/teams/red/board", hs256(teams=["red", "blue"]))[0], 200)
        self.assertEqual(get(self.proxy, "/teams/red/board", hs256(teams=["blue"]))[0], 403)

    def test_scopes(self):
        self.assertEqual(get(self.proxy, "/prices", hs256(scope="other prices:read"))[0], 200)
        self.assertEqual(get(self.proxy, "/prices", hs256(scp=["prices:read"]))[0], 200)
        code, _, body = get(self.proxy, "/prices", hs256(scope="other"))
        self.assertEqual(code, 403)
        self.assertIn("prices:read", json.loads(body)["message"])

    def test_api_key(self):
        self.assertEqual(get(self.proxy, "/prices", "wallboard-key-0123456789")[0], 200)
        self.assertEqual(get(self.proxy, "/prices", "wallboard-key-0123456780")[0], 401)
        # Its scopes are its own: prices:read does not open a user's inbox.
        self.assertEqual(get(self.proxy, "/users/wallboard/inbox", "wallboard-key-0123456789")[0], 200)
        self.assertEqual(get(self.proxy, "/users/alice/inbox", "wallboard-key-0123456789")[0], 403)

    def test_sse_cross_user_gets_forbidden_events_and_own_topic_works(self):
        stream = SSE(self.proxy, "/deltacast/sse?topic=/users/bob/inbox&topic=/users/alice/inbox",
                     headers={"Authorization": f"Bearer {hs256()}"})
        try:
            self.assertEqual(stream.status, 200)
            events = [stream.event(), stream.event()]
            kinds = {(name, data.get("topic"), data.get("code")) for name, data in events}
            self.assertIn(("error", "/users/bob/inbox", "forbidden"), kinds)
            self.assertIn(("snapshot", "/users/alice/inbox", None), kinds)
        finally:
            stream.close()

    def test_long_poll_cross_user(self):
        code, _, body = get(self.proxy, "/deltacast/poll?topic=/users/bob/inbox&topic=/users/alice/inbox", hs256())
        events = json.loads(body)
        self.assertEqual(code, 200)
        self.assertEqual({(e["type"], e["topic"]) for e in events}, {("error", "/users/bob/inbox"), ("snapshot", "/users/alice/inbox")})

    def test_websocket_subprotocol_token_and_per_subscribe_authorization(self):
        async def scenario():
            async with websockets.connect(self.proxy.url("/deltacast/ws").replace("http", "ws"),
                                          subprotocols=["deltacast.v1", f"token.{hs256()}"]) as ws:
                # The token never comes back in the response.
                self.assertEqual(ws.subprotocol, "deltacast.v1")
                await ws.send(json.dumps({"type": "subscribe", "topic": "/users/bob/inbox"}))
                refused = json.loads(await asyncio.wait_for(ws.recv(), 5))
                self.assertEqual((refused["type"], refused["code"]), ("error", "forbidden"))
                await ws.send(json.dumps({"type": "subscribe", "topic": "/users/alice/inbox"}))
                snapshot = json.loads(await asyncio.wait_for(ws.recv(), 5))
                self.assertEqual((snapshot["type"], snapshot["data"]), ("snapshot", {"n": 1}))
        run(scenario())

    def test_websocket_without_token_can_authenticate_by_message(self):
        async def scenario():
            async with websockets.connect(self.proxy.url("/deltacast/ws").replace("http", "ws"), subprotocols=["deltacast.v1"]) as ws:
                await ws.send(json.dumps({"type": "subscribe", "topic": "/users/alice/inbox"}))
                refused = json.loads(await asyncio.wait_for(ws.recv(), 5))
                self.assertEqual(refused["code"], "forbidden")
                self.assertIn("needs a token", refused["message"])
                await ws.send(json.dumps({"type": "auth", "token": hs256()}))
                await ws.send(json.dumps({"type": "subscribe", "topic": "/users/alice/inbox"}))
                snapshot = json.loads(await asyncio.wait_for(ws.recv(), 5))
                self.assertEqual(snapshot["type"], "snapshot")
        run(scenario())

    def test_websocket_invalid_subprotocol_token_is_refused_at_the_handshake(self):
        async def scenario():
            with self.assertRaises(websockets.exceptions.InvalidStatus) as caught:
                async with websockets.connect(self.proxy.url("/deltacast/ws").replace("http", "ws"),
                                              subprotocols=["deltacast.v1", f"token.{hs256(ttl=-600)}"]):
                    pass
            self.assertEqual(caught.exception.response.status_code, 401)
        run(scenario())

    def test_cross_site_websocket_hijacking_is_refused(self):
        async def scenario():
            url = self.proxy.url("/deltacast/ws").replace("http", "ws")
            with self.assertRaises(websockets.exceptions.InvalidStatus) as caught:
                async with websockets.connect(url, subprotocols=["deltacast.v1", f"token.{hs256()}"], origin="https://evil.test"):
                    pass
            self.assertEqual(caught.exception.response.status_code, 403)
            async with websockets.connect(url, subprotocols=["deltacast.v1"], origin="https://dashboard.test") as ws:
                self.assertEqual(ws.subprotocol, "deltacast.v1")
        run(scenario())

    def test_ticket_opens_one_stream_once(self):
        code, headers, body = request(self.proxy.url("/deltacast/ticket"), method="POST", headers={"Authorization": f"Bearer {hs256()}"})
        self.assertEqual(code, 200)
        self.assertEqual(headers["Cache-Control"], "no-store")
        ticket = json.loads(body)["ticket"]
        stream = SSE(self.proxy, f"/users/alice/inbox?ticket={ticket}")
        try:
            self.assertEqual(stream.status, 200)
            self.assertEqual(stream.event()[1]["data"], {"n": 1})
        finally:
            stream.close()
        replay = SSE(self.proxy, f"/users/alice/inbox?ticket={ticket}")
        self.assertEqual(replay.status, 401)
        self.assertIn(b"used or expired ticket", replay.body())
        replay.close()

    def test_ticket_expires(self):
        ticket = json.loads(request(self.proxy.url("/deltacast/ticket"), method="POST", headers={"Authorization": f"Bearer {hs256()}"})[2])["ticket"]
        time.sleep(2.5)  # auth.ticket_ttl is 2s here
        self.assertEqual(get(self.proxy, f"/users/alice/inbox?ticket={ticket}")[0], 401)

    def test_ticket_needs_a_valid_bearer_token(self):
        self.assertEqual(request(self.proxy.url("/deltacast/ticket"), method="POST")[0], 401)
        self.assertEqual(request(self.proxy.url("/deltacast/ticket"), method="POST", headers={"Authorization": f"Bearer {hs256(ttl=-600)}"})[0], 401)
        self.assertEqual(request(self.proxy.url("/deltacast/ticket"))[0], 405)

    def test_ticket_is_bound_to_its_subject(self):
        ticket = json.loads(request(self.proxy.url("/deltacast/ticket"), method="POST", headers={"Authorization": f"Bearer {hs256(sub='alice')}"})[2])["ticket"]
        self.assertEqual(get(self.proxy, f"/users/bob/inbox?ticket={ticket}")[0], 403)

    def test_websocket_with_ticket(self):
        ticket = json.loads(request(self.proxy.url("/deltacast/ticket"), method="POST", headers={"Authorization": f"Bearer {hs256()}"})[2])["ticket"]

        async def scenario():
            async with websockets.connect(self.proxy.url(f"/deltacast/ws?ticket={ticket}").replace("http", "ws"), subprotocols=["deltacast.v1"]) as ws:
                await ws.send(json.dumps({"type": "subscribe", "topic": "/users/alice/inbox"}))
                self.assertEqual(json.loads(await asyncio.wait_for(ws.recv(), 5))["type"], "snapshot")
        run(scenario())

    def test_secrets_never_reach_the_logs(self):
        token = hs256(sub="logcheck")
        ticket = json.loads(request(self.proxy.url("/deltacast/ticket"), method="POST", headers={"Authorization": f"Bearer {token}"})[2])["ticket"]
        get(self.proxy, f"/users/logcheck/inbox?ticket={ticket}")
        get(self.proxy, f"/users/logcheck/inbox?access_token={token}")
        time.sleep(0.3)
        log = self.proxy.log
        self.assertIn("\"event\":\"access\"", log)
        for secret in [token, ticket, SECRET, token.split(".")[2]]:
            self.assertNotIn(secret, log)


class ExpiryTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.proxy = Proxy(hs256_config())
        cls.proxy.publish("/users/alice/inbox", {"n": 1, "note": "long enough that a change travels as a patch"})
        cls.proxy.publish("/public", {"v": 1})

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()

    def short_token(self, sub="alice", seconds=2):
        # exp within the 5 s leeway is still accepted: the token is built to expire (leeway
        # included) `seconds` from now.
        return hs256(sub=sub, ttl=seconds - 5)

    def connect(self, token):
        return websockets.connect(self.proxy.url("/deltacast/ws").replace("http", "ws"), subprotocols=["deltacast.v1", f"token.{token}"])

    def test_expiry_ends_subscriptions_and_closes_4401(self):
        async def scenario():
            async with self.connect(self.short_token()) as ws:
                await ws.send(json.dumps({"type": "subscribe", "topic": "/users/alice/inbox"}))
                self.assertEqual(json.loads(await asyncio.wait_for(ws.recv(), 5))["type"], "snapshot")
                expired = json.loads(await asyncio.wait_for(ws.recv(), 15))
                self.assertEqual((expired["type"], expired["code"], expired["topic"]), ("error", "expired", "/users/alice/inbox"))
                with self.assertRaises(websockets.exceptions.ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), 10)
                self.assertEqual(closed.exception.rcvd.code, 4401)
        run(scenario())

    def test_renewal_keeps_every_subscription(self):
        async def scenario():
            async with self.connect(self.short_token()) as ws:
                await ws.send(json.dumps({"type": "subscribe", "topic": "/users/alice/inbox"}))
                snapshot = json.loads(await asyncio.wait_for(ws.recv(), 5))
                await ws.send(json.dumps({"type": "auth", "token": hs256(ttl=600)}))
                await asyncio.sleep(5)  # past exp + grace of the first token
                self.proxy.publish("/users/alice/inbox", {"n": 2, "note": "long enough that a change travels as a patch"})
                patch = json.loads(await asyncio.wait_for(ws.recv(), 5))
                self.assertEqual((patch["type"], patch["base"]), ("patch", snapshot["cursor"]))
        run(scenario())

    def test_renewal_as_another_user_drops_what_it_may_not_read(self):
        async def scenario():
            async with self.connect(hs256(ttl=600)) as ws:
                await ws.send(json.dumps({"type": "subscribe", "topic": "/users/alice/inbox"}))
                await ws.send(json.dumps({"type": "subscribe", "topic": "/public"}))
                await asyncio.wait_for(ws.recv(), 5)
                await asyncio.wait_for(ws.recv(), 5)
                await ws.send(json.dumps({"type": "auth", "token": hs256(sub="mallory", ttl=600)}))
                refused = json.loads(await asyncio.wait_for(ws.recv(), 5))
                self.assertEqual((refused["code"], refused["topic"]), ("forbidden", "/users/alice/inbox"))
                self.proxy.publish("/public", {"v": 2})
                self.assertEqual(json.loads(await asyncio.wait_for(ws.recv(), 5))["topic"], "/public")
        run(scenario())

    def test_invalid_renewal_is_refused_and_the_old_token_stays(self):
        async def scenario():
            async with self.connect(hs256(ttl=600)) as ws:
                await ws.send(json.dumps({"type": "auth", "token": "not-a-token"}))
                refused = json.loads(await asyncio.wait_for(ws.recv(), 5))
                self.assertEqual(refused["code"], "forbidden")
                self.assertIn("previous token stays", refused["message"])
                await ws.send(json.dumps({"type": "subscribe", "topic": "/users/alice/inbox"}))
                self.assertEqual(json.loads(await asyncio.wait_for(ws.recv(), 5))["type"], "snapshot")
        run(scenario())

    def test_a_connection_reading_only_public_topics_outlives_its_token(self):
        async def scenario():
            async with self.connect(self.short_token()) as ws:
                await ws.send(json.dumps({"type": "subscribe", "topic": "/public"}))
                self.assertEqual(json.loads(await asyncio.wait_for(ws.recv(), 5))["type"], "snapshot")
                await asyncio.sleep(5)   # past exp + grace
                self.proxy.publish("/public", {"v": 3, "after": "expiry"})
                self.assertEqual(json.loads(await asyncio.wait_for(ws.recv(), 5))["topic"], "/public")
                # ...but as an anonymous connection now: a protected topic needs a fresh token.
                await ws.send(json.dumps({"type": "subscribe", "topic": "/users/alice/inbox"}))
                refused = json.loads(await asyncio.wait_for(ws.recv(), 5))
                self.assertEqual(refused["code"], "forbidden")
        run(scenario())

    def test_single_topic_websocket_renews_by_message_too(self):
        async def scenario():
            url = self.proxy.url("/users/alice/inbox").replace("http", "ws")
            async with websockets.connect(url, subprotocols=["deltacast.v1", f"token.{self.short_token()}"]) as ws:
                snapshot = json.loads(await asyncio.wait_for(ws.recv(), 5))
                self.assertEqual(snapshot["type"], "snapshot")
                await ws.send(json.dumps({"type": "auth", "token": hs256(ttl=600)}))
                await asyncio.sleep(5)
                self.proxy.publish("/users/alice/inbox", {"n": 3, "note": "long enough that a change travels as a patch"})
                self.assertEqual(json.loads(await asyncio.wait_for(ws.recv(), 5))["type"], "patch")
        run(scenario())

    def test_sse_stream_ends_with_expired(self):
        stream = SSE(self.proxy, "/users/alice/inbox", headers={"Authorization": f"Bearer {self.short_token()}"})
        try:
            self.assertEqual(stream.event()[0], "snapshot")
            name, data = stream.event(timeout=15)
            self.assertEqual((name, data["code"]), ("error", "expired"))
            self.assertTrue(stream.wait_closed())
        finally:
            stream.close()


class AsymmetricTests(unittest.TestCase):
    """RS256 and ES256 with keys from files and from the environment; key-confusion attacks."""

    @classmethod
    def setUpClass(cls):
        cls.rsa = rsa_key()
        cls.ec = ec_key()
        import tempfile
        directory = tempfile.mkdtemp()
        cls.rsa_path = os.path.join(directory, "rsa.pem")
        with open(cls.rsa_path, "w") as handle:
            handle.write(public_pem(cls.rsa))
        cls.rs = Proxy(f"""
listen: 127.0.0.1:0
admin: {{ token: {ADMIN} }}
auth:
  jwt: {{ algorithm: RS256, public_key: {cls.rsa_path} }}
endpoints:
  - path: /users/{{user}}/inbox
    source: publish
    allow: "params.user == claims.sub"
""")
        cls.es = Proxy(f"""
listen: 127.0.0.1:0
admin: {{ token: {ADMIN} }}
auth:
  jwt: {{ algorithm: ES256, public_key: "${{ES_PUBLIC_KEY}}" }}
endpoints:
  - path: /users/{{user}}/inbox
    source: publish
    allow: "params.user == claims.sub"
""", env={"ES_PUBLIC_KEY": public_pem(cls.ec)})
        for proxy in (cls.rs, cls.es):
            proxy.publish("/users/alice/inbox", {"n": 1})

    @classmethod
    def tearDownClass(cls):
        cls.rs.stop()
        cls.es.stop()

    def claims(self, sub="alice"):
        return {"sub": sub, "exp": now() + 300}

    def test_rs256(self):
        self.assertEqual(get(self.rs, "/users/alice/inbox", jwt.encode(self.claims(), self.rsa, algorithm="RS256"))[0], 200)
        other = rsa_key()
        code, _, body = get(self.rs, "/users/alice/inbox", jwt.encode(self.claims(), other, algorithm="RS256"))
        self.assertEqual(code, 401)
        self.assertIn("bad signature", json.loads(body)["message"])

    def test_hs256_signed_with_the_rsa_public_key(self):
        # The classic key-confusion attack: the public key's PEM used as an HMAC secret.
        import hmac, hashlib
        header = jwt.utils.base64url_encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = jwt.utils.base64url_encode(json.dumps(self.claims()).encode())
        signing_input = header + b"." + payload
        signature = jwt.utils.base64url_encode(hmac.new(public_pem(self.rsa).encode(), signing_input, hashlib.sha256).digest())
        code, _, body = get(self.rs, "/users/alice/inbox", (signing_input + b"." + signature).decode())
        self.assertEqual(code, 401)
        self.assertIn("does not match the configured RS256", json.loads(body)["message"])

    def test_es256(self):
        self.assertEqual(get(self.es, "/users/alice/inbox", jwt.encode(self.claims(), self.ec, algorithm="ES256"))[0], 200)
        self.assertEqual(get(self.es, "/users/bob/inbox", jwt.encode(self.claims(), self.ec, algorithm="ES256"))[0], 403)
        other = ec_key()
        self.assertEqual(get(self.es, "/users/alice/inbox", jwt.encode(self.claims(), other, algorithm="ES256"))[0], 401)
        # RS256 tokens are refused by an ES256 proxy, whatever their signature.
        self.assertEqual(get(self.es, "/users/alice/inbox", jwt.encode(self.claims(), self.rsa, algorithm="RS256"))[0], 401)

    def test_short_rsa_key_is_a_startup_error(self):
        import subprocess, tempfile
        directory = tempfile.mkdtemp()
        key_path, config_path = os.path.join(directory, "short.pem"), os.path.join(directory, "c.yaml")
        from cryptography.hazmat.primitives.asymmetric import rsa as rsa_module
        with open(key_path, "w") as handle:
            handle.write(public_pem(rsa_module.generate_private_key(public_exponent=65537, key_size=1024)))
        with open(config_path, "w") as handle:
            handle.write(f"""
auth:
  jwt: {{ algorithm: RS256, public_key: {key_path} }}
endpoints:
  - path: /x
    source: publish
""")
        result = subprocess.run([os.environ.get("DELTACAST_BIN", ".build/debug/deltacast"), "check", "-c", config_path], capture_output=True, text=True)
        self.assertEqual(result.returncode, 1)
        self.assertIn("the RSA key has 1024 bits; RS256 needs 2048 or more", result.stderr)

    def test_unusable_key_is_a_startup_error(self):
        import subprocess, tempfile
        directory = tempfile.mkdtemp()
        path = os.path.join(directory, "c.yaml")
        with open(path, "w") as handle:
            handle.write(f"""
auth:
  jwt: {{ algorithm: ES256, public_key: {self.rsa_path} }}
endpoints:
  - path: /x
    source: publish
""")
        result = subprocess.run([os.environ.get("DELTACAST_BIN", ".build/debug/deltacast"), "check", "-c", path], capture_output=True, text=True)
        self.assertEqual(result.returncode, 1)
        self.assertIn("ES256 needs an EC key on curve P-256", result.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
