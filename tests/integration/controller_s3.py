#!/usr/bin/python3
"""A minimal S3 client (path style, AWS SigV4, empty request bodies) for the
controller tests, written independently of pkg/s3 so that it can check what
the controller stored.

    controller_s3.py mb BUCKET              create a bucket
    controller_s3.py get BUCKET KEY OUT     download an object to OUT
    controller_s3.py ls BUCKET PREFIX       print the keys under PREFIX

Environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, STASIS_S3_ENDPOINT
(http://host:port), STASIS_S3_REGION.
"""
import datetime
import hashlib
import hmac
import os
import sys
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET


def request(method, bucket, key="", query=None):
    ep = os.environ["STASIS_S3_ENDPOINT"].rstrip("/")
    region = os.environ.get("STASIS_S3_REGION", "us-east-1")
    ak, sk = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
    host = urllib.parse.urlparse(ep).netloc
    path = "/" + bucket + ("/" + urllib.parse.quote(key, safe="/~") if key else "")
    q = sorted((query or {}).items())
    cq = "&".join("%s=%s" % (urllib.parse.quote(k, safe="~"), urllib.parse.quote(v, safe="~"))
                  for k, v in q)
    now = datetime.datetime.now(datetime.timezone.utc)
    amz, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    ph = hashlib.sha256(b"").hexdigest()
    headers = {"host": host, "x-amz-content-sha256": ph, "x-amz-date": amz}
    sh = ";".join(sorted(headers))
    creq = "\n".join([method, path, cq] + ["%s:%s" % (h, headers[h]) for h in sorted(headers)]
                     + ["", sh, ph])
    scope = "%s/%s/s3/aws4_request" % (day, region)
    sts = "\n".join(["AWS4-HMAC-SHA256", amz, scope, hashlib.sha256(creq.encode()).hexdigest()])
    k = ("AWS4" + sk).encode()
    for part in (day, region, "s3", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (
        ak, scope, sh, sig)
    del headers["host"]
    r = urllib.request.Request(ep + path + ("?" + cq if cq else ""), method=method,
                               headers=headers, data=b"" if method == "PUT" else None)
    with urllib.request.urlopen(r) as resp:
        return resp.read()


def main():
    cmd = sys.argv[1]
    if cmd == "mb":
        request("PUT", sys.argv[2])
    elif cmd == "get":
        data = request("GET", sys.argv[2], sys.argv[3])
        with open(sys.argv[4], "wb") as f:
            f.write(data)
    elif cmd == "ls":
        ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
        body = request("GET", sys.argv[2], "", {"list-type": "2", "prefix": sys.argv[3]})
        for c in ET.fromstring(body).iter(ns + "Contents"):
            print(c.find(ns + "Key").text)
    else:
        sys.exit("unknown command " + cmd)


main()
