#!/usr/bin/env python3
"""Writes the hand-made seed files of fuzz/corpus/ (standard library only; run from the repo root).

The artifact seeds come from `qtx quantize` on tiny models instead (fuzz/make_artifact_seeds.sh);
the shipped models' small files are copied as they are.
"""
import json, os, struct, zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
SEP = b"\n--qtx-fuzz-next-file--\n"


def put(target, name, data):
    os.makedirs(os.path.join(ROOT, target), exist_ok=True)
    with open(os.path.join(ROOT, target, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def safetensors(tensors, metadata=None):
    """tensors: [(name, dtype, shape, raw bytes)] -> file bytes, data 8-aligned as the writer does."""
    header, off, blob = {}, 0, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blob += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + blob


def png(width, height, color_type, bit_depth, rows, palette=None, interlace=0):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + r for r in rows)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, interlace))
    if palette:
        out += chunk(b"PLTE", palette)
    return out + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def idx(dims, payload):
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + payload


# safetensors: every dtype, metadata, an empty tensor, a scalar.
f32 = struct.pack("<4f", 1.0, -2.5, 3.25, 0.0)
put("fuzz_safetensors", "f32_i8_meta.safetensors", safetensors(
    [("a.weight", "F32", [2, 2], f32), ("a.qweight", "I8", [4], bytes([1, 255, 3, 128]))],
    {"qtx.format": "qtx-quantized/1"}))
put("fuzz_safetensors", "all_dtypes.safetensors", safetensors([
    ("f64", "F64", [1], struct.pack("<d", 0.5)), ("f16", "F16", [2], struct.pack("<2H", 0x3C00, 0x0001)),
    ("bf16", "BF16", [2], struct.pack("<2H", 0x3F80, 0x7FC0)), ("i64", "I64", [1], struct.pack("<q", -7)),
    ("i32", "I32", [1], struct.pack("<i", 1 << 30)), ("i16", "I16", [1], struct.pack("<h", -300)),
    ("u8", "U8", [3], bytes([0, 127, 255])), ("bool", "BOOL", [1], b"\x01")]))
put("fuzz_safetensors", "empty_and_scalar.safetensors", safetensors(
    [("empty", "F32", [0, 3], b""), ("scalar", "F32", [], struct.pack("<f", 2.0))]))

# config.json / preprocessor_config.json: the shipped models' files and small variants.
for src, name in [("models/vit-fmnist/config.json", "vit_config.json"), ("models/bert-austen/config.json", "bert_config.json"),
                  ("models/vit-fmnist/preprocessor_config.json", "vit_preprocessor_config.json")]:
    put("fuzz_hf_config", name, open(src, "rb").read())
put("fuzz_hf_config", "tiny_vit_config.json", json.dumps({
    "model_type": "vit", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
    "image_size": 8, "patch_size": 4, "num_channels": 1, "qkv_bias": True, "hidden_act": "gelu",
    "id2label": {"0": "a", "1": "b"}}))
put("fuzz_hf_config", "tiny_bert_config.json", json.dumps({
    "model_type": "bert", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16,
    "vocab_size": 30, "max_position_embeddings": 16, "type_vocab_size": 2, "pad_token_id": 0,
    "position_embedding_type": "absolute", "layer_norm_eps": 1e-12, "id2label": {"0": "x", "1": "y"}}))
put("fuzz_hf_config", "preprocessor_int_size.json", json.dumps({
    "do_resize": False, "do_normalize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.25, 1], "size": 8}))

# vocab.txt + tokenizer_config.json + text.
vocab = open("models/bert-austen/vocab.txt", "rb").read().split(b"\n")[:300]
tok_cfg = open("models/bert-austen/tokenizer_config.json", "rb").read()
put("fuzz_tokenizer", "austen_vocab300.txt", b"\n".join(vocab) + b"\n" + SEP + tok_cfg + SEP +
    "It is a truth universally acknowledged, that a single man [SEP] in possession of a good fortune… Émile 中文".encode())
put("fuzz_tokenizer", "tiny_no_config.txt", b"[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhe\n##llo\nworld\r\n!\n" + SEP + SEP +
    b"Hello, WORLD! hellohello \xc3\xa9\t\x00\x7f")
put("fuzz_tokenizer", "cased_config.txt", b"[PAD]\n[UNK]\n[CLS]\n[SEP]\nA\n##b\n" + SEP +
    b'{"do_lower_case": false, "strip_accents": false, "tokenize_chinese_chars": false}' + SEP + b"Ab Ab\xe4\xb8\xad [UNK]")

# Images: PNG of each colour type, 16-bit, interlaced, palette; PGMs.
put("fuzz_image", "gray_4x4.png", png(4, 4, 0, 8, [bytes(range(i * 4, i * 4 + 4)) for i in range(4)]))
put("fuzz_image", "rgb_3x2.png", png(3, 2, 2, 8, [bytes(range(9)), bytes(range(9, 18))]))
put("fuzz_image", "rgba_2x2.png", png(2, 2, 6, 8, [bytes(range(8)), bytes(range(8, 16))]))
put("fuzz_image", "gray16_2x2_interlaced.png", png(2, 2, 0, 16, [b"\x01\x02\x03\x04", b"\xff\xff\x00\x00"], interlace=1))
put("fuzz_image", "palette_2x2.png", png(2, 2, 3, 8, [b"\x00\x01", b"\x01\x00"], palette=b"\xff\x00\x00\x00\x00\xff"))
put("fuzz_image", "gray_alpha_1x3.png", png(1, 3, 4, 8, [b"\x10\x80", b"\x20\xff", b"\x30\x00"]))
put("fuzz_image", "p5_4x4.pgm", b"P5\n# comment\n4 4\n255\n" + bytes(range(16)))
put("fuzz_image", "p5_3x1_maxval15.pgm", b"P5 3 1 15 " + bytes([0, 7, 15]))

# IDX: labels (1-D), images (3-D), 2-D.
put("fuzz_idx", "labels.idx", idx([5], bytes([0, 1, 2, 9, 3])))
put("fuzz_idx", "images_2x3x3.idx", idx([2, 3, 3], bytes(range(18))))
put("fuzz_idx", "matrix_2x2.idx", idx([2, 2], bytes([1, 2, 3, 4])))
