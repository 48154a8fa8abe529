#!/usr/bin/env python3
# make_expected: regenerates the expected renderings in this directory with
# Python's json module, whose json.dumps(cfg, indent=2) + "\n" is the
# canonical form of the live egress file. Run it here after changing an input;
# test_egress.c compares the C renderer's bytes against its output.
import json
import random
import struct


def dumps(cfg):
    return json.dumps(cfg, indent=2) + "\n"


def write(name, text):
    with open(name, "w", encoding="ascii", newline="") as f:
        f.write(text)


def model(routes):
    """What br_egress_parse makes of a routes array: lowercase unique hosts,
    unique paths in first-seen order, the first occurrence's auth, unknown
    route keys dropped, nulls as absent."""
    out = {}
    for r in routes:
        host = r["host"].lower()
        paths = r.get("path_allowlist") or []
        if host in out:
            for p in paths:
                if p not in out[host]["path_allowlist"]:
                    out[host]["path_allowlist"].append(p)
            continue
        route = {"host": host, "path_allowlist": []}
        for p in paths:
            if p not in route["path_allowlist"]:
                route["path_allowlist"].append(p)
        if r.get("auth_scheme") is not None:
            route["auth_scheme"] = r["auth_scheme"]
            route["token_env"] = r["token_env"]
        out[host] = route
    return list(out.values())


def rerender(src, dst):
    """Expected output of render(parse(src)): the doc with routes normalised
    in place."""
    with open(src, encoding="utf-8") as f:
        doc = json.load(f)
    doc["routes"] = model(doc["routes"])
    write(dst, dumps(doc))


# A canonical file must render to itself.
canonical = {
    "routes": [
        {"host": "api.github.com", "path_allowlist": ["/repos/acme/", "/user"],
         "auth_scheme": "Bearer", "token_env": "EGRESS_TOKEN_0"},
        {"host": "pypi.org", "path_allowlist": []},
        {"host": "files.example.com", "path_allowlist": ["/caf\u00e9/", "/\U0001f600", "/a b\"c\\d"]},
    ]
}
write("canonical.json", dumps(canonical))

# Keys the daemon does not own, of every JSON type, around "routes".
rerender("extra_keys.in.json", "extra_keys.expected.json")

# Reals written with 17 significant digits; the renderer must find the
# shortest repr as Python does. Random bit patterns cover every exponent;
# powers of two and the extremes cover the lopsided rounding intervals.
rng = random.Random(20240611)
floats = []
while len(floats) < 3000:
    x = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
    if x == x and abs(x) != float("inf"):
        floats.append(x)
floats += [2.0 ** e for e in range(-1074, 1024, 7)]
floats += [0.1, 0.2, 0.3, 1.0, -1.0, 100.0, 1e15, 1e16, 1e17, 1e-4, 1e-5, 123456789.0,
           1.7976931348623157e308, 5e-324, 2.2250738585072014e-308, 9007199254740993.0,
           0.0, -0.0, 1.5, 1e22, 1e23, 4.35, 2.675, 1 / 3]
with open("floats.in.json", "w", encoding="ascii") as f:
    f.write('{"routes": [], "floats": [' + ", ".join("%.17e" % x for x in floats) + "]}\n")
rerender("floats.in.json", "floats.expected.json")

# A doc without "routes" gets it appended; no doc at all gives just routes.
with open("no_routes_key.doc.json", encoding="utf-8") as f:
    doc = json.load(f)
doc["routes"] = canonical["routes"]
write("no_routes_key.expected.json", dumps(doc))
write("no_doc.expected.json", dumps({"routes": canonical["routes"]}))
