#!/usr/bin/env python3
# make_expected: regenerates the cases in this directory, each NAME.json
# beside NAME.expected.json, the bytes of Python's json.dumps(value,
# indent=2) + "\n" for the value NAME.json holds. Run it here after changing
# a case; test_pyjson.c compares common/pyjson's bytes against them.
import json
import random
import struct


def case(name, text):
    """NAME.json holds text as written; the expected file is what Python
    writes for the value it reads back."""
    with open(name + ".json", "w", encoding="utf-8", newline="") as f:
        f.write(text)
    with open(name + ".json", encoding="utf-8") as f:
        value = json.load(f)
    with open(name + ".expected.json", "w", encoding="ascii", newline="") as f:
        f.write(json.dumps(value, indent=2) + "\n")


# Every JSON type, empty and nested containers, key order (a repeated key
# keeps its first place and its last value), and strings that need every
# kind of escape: named ones, \u00XX for other controls and DEL, non-ASCII
# as \uXXXX, astral characters as surrogate pairs; "/" left alone.
case("values", r'''{
  "null": null, "true": true, "false": false,
  "ints": [0, -0, 1, -1, 42, 9223372036854775807, -9223372036854775808],
  "reals": [0.0, -0.0, 1.0, -1.5, 0.1, 100.0, 1e16, 1E-7, 1.0e+2, 12345678901234567890.0, 5e-324],
  "strings": ["", "plain", "quote \" backslash \\ slash /", "\b\f\n\r\t", "\u0001\u001f\u007f",
              "caf\u00e9 na\u00efve", "\u65e5\u672c", "\ud83d\ude00", "\u2028\u2029\ufeff", "raw: é 😀"],
  "empty_list": [], "empty_obj": {},
  "nested": {"a": [1, [2, [3, []]], {}], "b": {"c": {"d": [{"e": null}]}}},
  "mixed": [{"a": 1, "b": [true, false, null]}, {}, [], "x", 1.5, -2],
  "k\u00ebys \"quoted\"": {"z": 1, "a": 2, "dup": 1, "dup": 2},
  "deep": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[["bottom"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]
}
''')

# A top-level array, and one scalar per line, as json.dumps nests them.
case("array", '[1, "two", [3.0], {"four": [4]}, [], {}]\n')

# Reals written with 17 significant digits; the renderer must find the
# shortest repr as Python does. Random bit patterns cover every exponent;
# powers of two and the extremes cover the lopsided rounding intervals; the
# rest sit on the edges of fixed and exponent notation.
rng = random.Random(20240612)
reals = []
while len(reals) < 600:
    x = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
    if x == x and abs(x) != float("inf"):
        reals.append(x)
reals += [2.0 ** e for e in range(-1074, 1024, 23)]
reals += [1e-4, 9.999999999999999e-5, 1e-5, 1e15, 9999999999999998.0, 1e16, 1.5e16, 1e17, 1e22, 1e23,
          0.1, 0.2, 0.3, 1 / 3, 2 / 3, 4.35, 2.675, 1.7976931348623157e308, 5e-324, 2.2250738585072014e-308,
          9007199254740993.0, 123456789.0, 0.0, -0.0, -1e-300, -123.456]
case("reals", "[" + ", ".join("%.17e" % x for x in reals) + "]\n")
