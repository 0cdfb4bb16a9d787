"""A small S3-compatible object store for tests: path-style buckets, PUT and GET of objects,
and AWS Signature Version 4 checked on every signed request as S3 checks it (the
canonical request, the x-amz-content-sha256 digest against the body, the date within 15
minutes, the credential scope). Unsigned GETs are allowed only with public_read, as a
public-read bucket's are; an unsigned or badly signed PUT gets 403 with S3's error codes.

Written from the published SigV4 specification, to test `mlcdn ctl model publish
--store-sigv4` without an S3 service.
"""
import datetime
import hashlib
import hmac
import http.server
import threading
import urllib.parse


def _hmac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signing_key(secret, date, region, service):
    k = _hmac(("AWS4" + secret).encode(), date)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, "aws4_request")


class S3:
    def __init__(self, key_id, secret, region="us-east-1", public_read=True):
        self.key_id, self.secret, self.region = key_id, secret, region
        self.public_read = public_read
        self.objects = {}  # "/bucket/key" -> bytes
        self.log = []      # (method, path, "signed" | "anonymous" | error code)
        self.session_tokens = []  # x-amz-security-token of each signed PUT ("" if none)
        self.lock = threading.Lock()
        s3 = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def reply(self, status, body=b"", ctype="application/xml"):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def error(self, status, code, msg):
                with s3.lock:
                    s3.log.append((self.command, self.path, code))
                self.reply(status, ("<Error><Code>%s</Code><Message>%s</Message></Error>"
                                    % (code, msg)).encode())

            def body(self):
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def verify(self, payload):
                """None when the request is signed right, else (status, code, message)."""
                auth = self.headers.get("Authorization", "")
                if not auth.startswith("AWS4-HMAC-SHA256 "):
                    return 403, "AccessDenied", "Anonymous users cannot write"
                try:
                    f = dict(p.strip().split("=", 1) for p in auth[17:].split(","))
                    key_id, date, region, service, term = f["Credential"].split("/")
                    signed = f["SignedHeaders"].split(";")
                    got = f["Signature"]
                except (ValueError, KeyError):
                    return 400, "AuthorizationHeaderMalformed", "cannot parse Authorization"
                if key_id != s3.key_id:
                    return 403, "InvalidAccessKeyId", "unknown access key id"
                if region != s3.region or service != "s3" or term != "aws4_request":
                    return 400, "AuthorizationHeaderMalformed", "credential scope"
                amz_date = self.headers.get("x-amz-date", "")
                try:
                    t = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
                        tzinfo=datetime.timezone.utc)
                except ValueError:
                    return 403, "AccessDenied", "x-amz-date missing or malformed"
                now = datetime.datetime.now(datetime.timezone.utc)
                if abs((now - t).total_seconds()) > 900 or amz_date[:8] != date:
                    return 403, "RequestTimeTooSkewed", "x-amz-date"
                digest = self.headers.get("x-amz-content-sha256")
                if digest is None:
                    return 400, "InvalidRequest", "missing x-amz-content-sha256"
                if digest != "UNSIGNED-PAYLOAD" and digest != hashlib.sha256(payload).hexdigest():
                    return 400, "XAmzContentSHA256Mismatch", "the body's digest differs"
                for h in ("host", "x-amz-date", "x-amz-content-sha256"):
                    if h not in signed:
                        return 403, "AccessDenied", "%s is not signed" % h
                u = urllib.parse.urlsplit(self.path)
                q = sorted(urllib.parse.parse_qsl(u.query, keep_blank_values=True))
                canon = "\n".join([
                    self.command,
                    urllib.parse.quote(urllib.parse.unquote(u.path), safe="/-_.~"),
                    "&".join("%s=%s" % (urllib.parse.quote(k, safe="-_.~"),
                                        urllib.parse.quote(v, safe="-_.~")) for k, v in q),
                    "".join("%s:%s\n" % (h, " ".join((self.headers.get(h) or "").split()))
                            for h in signed),
                    ";".join(signed),
                    digest])
                sts = "\n".join(["AWS4-HMAC-SHA256", amz_date,
                                 "/".join([date, region, service, term]),
                                 hashlib.sha256(canon.encode()).hexdigest()])
                want = hmac.new(signing_key(s3.secret, date, region, service), sts.encode(),
                                hashlib.sha256).hexdigest()
                if not hmac.compare_digest(want, got):
                    return 403, "SignatureDoesNotMatch", "the signature does not match"
                return None

            def do_PUT(self):
                payload = self.body()
                bad = self.verify(payload)
                if bad:
                    return self.error(*bad)
                path = urllib.parse.urlsplit(self.path).path
                if path.count("/") < 2:
                    return self.error(400, "InvalidRequest", "PUT needs /BUCKET/KEY")
                with s3.lock:
                    s3.objects[path] = payload
                    s3.log.append(("PUT", path, "signed"))
                    s3.session_tokens.append(self.headers.get("x-amz-security-token", ""))
                self.send_response(200)
                self.send_header("ETag", '"%s"' % hashlib.md5(payload).hexdigest())
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self):
                signed = "Authorization" in self.headers
                if signed:
                    bad = self.verify(self.body())
                    if bad:
                        return self.error(*bad)
                elif not s3.public_read:
                    return self.error(403, "AccessDenied", "Access Denied")
                path = urllib.parse.urlsplit(self.path).path
                with s3.lock:
                    data = s3.objects.get(path)
                    if data is not None:
                        s3.log.append(("GET", path, "signed" if signed else "anonymous"))
                if data is None:
                    return self.error(404, "NoSuchKey", "The specified key does not exist.")
                self.reply(200, data, "binary/octet-stream")

            do_HEAD = do_GET

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.srv.server_address[1]
        self.th = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.th.start()

    def requests(self, method, path):
        with self.lock:
            return [e for e in self.log if e[0] == method and e[1] == path]

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()
