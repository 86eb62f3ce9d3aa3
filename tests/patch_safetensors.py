#!/usr/bin/env python3
"""Corrupts one thing in a safetensors file, for the command-line tests (standard library only).

  patch_safetensors.py FILE set NAME INDEX VALUE   element INDEX of tensor NAME (F32, or U8/I8 byte) := VALUE
  patch_safetensors.py FILE fill NAME VALUE        every element of F32 tensor NAME := VALUE
  patch_safetensors.py FILE meta KEY VALUE         metadata KEY := VALUE
  patch_safetensors.py FILE add NAME VALUE         a new one-element F32 tensor NAME holding VALUE
"""
import json
import struct
import sys


def main():
    path, op = sys.argv[1], sys.argv[2]
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    body = bytearray(data[8 + n:])
    if op in ("set", "fill"):
        name = sys.argv[3]
        t = header[name]
        start, end = t["data_offsets"]
        if op == "set":
            i, v = int(sys.argv[4]), float(sys.argv[5])
            if t["dtype"] == "F32":
                struct.pack_into("<f", body, start + 4 * i, v)
            elif t["dtype"] in ("U8", "I8"):
                body[start + i] = int(v) & 0xFF
            else:
                sys.exit("unsupported dtype " + t["dtype"])
        else:
            v = float(sys.argv[4])
            for off in range(start, end, 4):
                struct.pack_into("<f", body, off, v)
    elif op == "meta":
        header.setdefault("__metadata__", {})[sys.argv[3]] = sys.argv[4]
    elif op == "add":
        header[sys.argv[3]] = {"dtype": "F32", "shape": [1], "data_offsets": [len(body), len(body) + 4]}
        body += struct.pack("<f", float(sys.argv[4]))
    else:
        sys.exit("unknown operation " + op)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    open(path, "wb").write(struct.pack("<Q", len(text)) + text + bytes(body))


if __name__ == "__main__":
    main()
