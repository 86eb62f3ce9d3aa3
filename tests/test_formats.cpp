// File formats and data readers: safetensors, config.json, vocab/tokenizer, IDX, images.
#include <filesystem>
#include <zlib.h>

#include <cmath>
#include <cstring>
#include <set>

#include "data/datasets.h"
#include "data/idx.h"
#include "data/image.h"
#include "formats/bert_tokenizer.h"
#include "formats/hf_config.h"
#include "formats/safetensors.h"
#include "test_util.h"

using namespace qtx;
using qtx_test::temp_dir;
using qtx_test::write_bytes;

namespace {

// A safetensors file from a literal header and a data blob.
std::string raw_safetensors(const std::string& header, const std::string& data, uint64_t claimed_len = 0) {
  uint64_t n = claimed_len ? claimed_len : header.size();
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return out + header + data;
}

}  // namespace

TEST(Safetensors, RoundTripAllDtypesAndMetadata) {
  std::string d = temp_dir("st_roundtrip");
  std::vector<float> f = {1.5f, -2.25f, 3.0f, 0.0f, 1e-3f, -7.0f};
  std::vector<uint16_t> h, b;
  for (float x : f) {
    h.push_back(float_to_half(x));
    b.push_back(float_to_bf16(x));
  }
  std::vector<int8_t> i8 = {-128, -1, 0, 1, 127, 5};
  std::vector<uint8_t> u8 = {0, 1, 2, 250, 255, 7};
  std::vector<int32_t> i32 = {-70000, 0, 70000, 1, 2, 3};
  SafetensorsWriter w;
  w.add("a.f32", DType::F32, {2, 3}, f.data(), f.size() * 4);
  w.add("a.f16", DType::F16, {6}, h.data(), h.size() * 2);
  w.add("a.bf16", DType::BF16, {3, 2}, b.data(), b.size() * 2);
  w.add("b.i8", DType::I8, {6}, i8.data(), 6);
  w.add("b.u8", DType::U8, {1, 6}, u8.data(), 6);
  w.add("b.i32", DType::I32, {6}, i32.data(), 24);
  w.add("scalar", DType::F32, {}, f.data(), 4);
  w.set_metadata("format", "pt");
  w.set_metadata("qtx.note", "hello");
  w.write(d + "/m.safetensors");

  auto st = SafetensorsFile::open(d + "/m.safetensors");
  EXPECT_EQ(st->tensors().size(), 7u);
  EXPECT_EQ(st->metadata().at("format"), "pt");
  EXPECT_EQ(st->metadata().at("qtx.note"), "hello");
  EXPECT_EQ(st->get("a.f32").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(st->to_float(st->get("a.f32")), f);
  auto hf = st->to_float(st->get("a.f16"));
  auto bf = st->to_float(st->get("a.bf16"));
  for (size_t i = 0; i < f.size(); ++i) {
    EXPECT_NEAR(hf[i], f[i], std::fabs(f[i]) * 1e-3 + 1e-6);
    EXPECT_NEAR(bf[i], f[i], std::fabs(f[i]) * 1e-2 + 1e-6);
  }
  const TensorView& t = st->get("b.i8");
  EXPECT_EQ(std::memcmp(t.data, i8.data(), 6), 0);
  EXPECT_EQ(st->to_float(st->get("b.u8"))[3], 250.0f);
  EXPECT_EQ(st->to_float(st->get("b.i32"))[0], -70000.0f);
  EXPECT_EQ(st->get("scalar").numel(), 1);
  EXPECT_QTX_ERROR(st->get("nope"), "missing tensor 'nope'");
  // The data section starts 8-byte aligned, as the safetensors spec recommends.
  std::string bytes = qtx_test::read_bytes(d + "/m.safetensors");
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u);
}

TEST(Safetensors, HalfConversionsRoundToNearestEven) {
  EXPECT_EQ(float_to_half(1.0f), 0x3C00);
  EXPECT_EQ(float_to_half(-2.0f), 0xC000);
  EXPECT_EQ(float_to_half(65504.0f), 0x7BFF);
  EXPECT_EQ(float_to_half(1e6f), 0x7C00);  // overflow -> inf
  EXPECT_EQ(half_to_float(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(float_to_half(1.0f + std::ldexp(1.0f, -11)), 0x3C00);  // tie -> even
  EXPECT_EQ(float_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(bf16_to_float(0xC040), -3.0f);
}

struct CorruptCase {
  const char* name;
  std::string file;
  const char* expect;
};

TEST(Safetensors, RejectsEachCorruptionWithClearError) {
  std::string d = temp_dir("st_corrupt");
  const std::string ok_hdr = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  std::vector<CorruptCase> cases = {
      {"short", std::string("\x05\x00\x00", 3), "need at least 8"},
      {"absurd_len", raw_safetensors(ok_hdr, std::string(8, '\0'), 1ull << 40), "absurd"},
      {"len_past_end", raw_safetensors(ok_hdr, std::string(8, '\0'), ok_hdr.size() + 100), "exceeds the file"},
      {"not_json", raw_safetensors("{nope", ""), "not valid JSON"},
      {"not_object", raw_safetensors("[1,2]", ""), "not a JSON object"},
      {"unknown_dtype", raw_safetensors(R"({"w":{"dtype":"F12","shape":[2],"data_offsets":[0,8]}})", std::string(8, '\0')),
       "unknown dtype"},
      {"size_lies", raw_safetensors(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, '\0')),
       "shape x dtype size"},
      {"truncated_data", raw_safetensors(ok_hdr, std::string(4, '\0')), "data range"},
      {"overlap", raw_safetensors(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                  R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                  std::string(12, '\0')),
       "overlap"},
      {"negative_dim", raw_safetensors(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", std::string(8, '\0')),
       "negative"},
      {"begin_after_end", raw_safetensors(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", std::string(8, '\0')),
       "begin > end"},
      {"missing_field", raw_safetensors(R"({"w":{"dtype":"F32","shape":[2]}})", std::string(8, '\0')), "needs dtype"},
      {"bad_metadata", raw_safetensors(R"({"__metadata__":{"a":1}})", ""), "__metadata__.a"},
  };
  for (const auto& c : cases) {
    std::string p = d + "/" + c.name + ".safetensors";
    write_bytes(p, c.file);
    SCOPED_TRACE(c.name);
    EXPECT_QTX_ERROR(SafetensorsFile::open(p), c.expect);
    EXPECT_QTX_ERROR(SafetensorsFile::open(p), p);  // names the file
  }
  EXPECT_QTX_ERROR(SafetensorsFile::open(d + "/absent.safetensors"), "cannot open");
  // A correct file built by hand opens.
  write_bytes(d + "/ok.safetensors", raw_safetensors(ok_hdr, std::string(8, '\0')));
  EXPECT_EQ(SafetensorsFile::open(d + "/ok.safetensors")->get("w").numel(), 2);
}

TEST(Safetensors, FuzzedHeadersNeverCrash) {
  // Flip bytes of a valid file at random; each open either succeeds or throws qtx::Error.
  std::string d = temp_dir("st_fuzz");
  std::vector<float> f(16, 1.0f);
  SafetensorsWriter w;
  w.add("x", DType::F32, {4, 4}, f.data(), 64);
  w.add("y", DType::F32, {16}, f.data(), 64);
  w.write(d + "/base.safetensors");
  std::string base = qtx_test::read_bytes(d + "/base.safetensors");
  uint64_t s = 12345;
  int errors = 0;
  for (int it = 0; it < 400; ++it) {
    std::string m = base;
    for (int k = 0; k < 3; ++k) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      size_t pos = static_cast<size_t>((s >> 33) % std::min<uint64_t>(m.size(), 8 + 120));
      m[pos] = static_cast<char>(s >> 13);
    }
    if (it % 7 == 0) m.resize(static_cast<size_t>((s >> 20) % m.size()));
    write_bytes(d + "/f.safetensors", m);
    try {
      auto st = SafetensorsFile::open(d + "/f.safetensors");
      for (const auto& t : st->tensors()) (void)st->to_float(t);
    } catch (const qtx::Error&) {
      ++errors;
    }
  }
  EXPECT_GT(errors, 100);  // most mutations must be caught
}

TEST(Config, LoadsTransformersFieldsAndRejectsBadOnes) {
  std::string d = temp_dir("config");
  write_bytes(d + "/vit.json", R"({"model_type":"vit","architectures":["ViTForImageClassification"],
    "hidden_size":64,"num_hidden_layers":2,"num_attention_heads":4,"intermediate_size":128,
    "hidden_act":"gelu","layer_norm_eps":1e-12,"image_size":28,"patch_size":7,"num_channels":1,
    "qkv_bias":true,"id2label":{"0":"a","1":"b"}})");
  ModelConfig c = ModelConfig::load(d + "/vit.json");
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.head_dim(), 16);
  EXPECT_EQ(c.id2label, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(c.architecture, "ViTForImageClassification");
  c.save(d + "/again.json");
  ModelConfig c2 = ModelConfig::load(d + "/again.json");
  EXPECT_EQ(c2.patch_size, 7);
  EXPECT_EQ(c2.id2label, c.id2label);

  auto bad = [&](const std::string& name, const std::string& text, const std::string& expect) {
    write_bytes(d + "/" + name, text);
    SCOPED_TRACE(name);
    EXPECT_QTX_ERROR(ModelConfig::load(d + "/" + name), expect);
  };
  bad("act.json", R"({"model_type":"bert","hidden_size":64,"num_hidden_layers":1,"num_attention_heads":2,
      "intermediate_size":8,"hidden_act":"swishy","vocab_size":10,"max_position_embeddings":8})", "unknown hidden_act 'swishy'");
  bad("heads.json", R"({"model_type":"bert","hidden_size":65,"num_hidden_layers":1,"num_attention_heads":2,
      "intermediate_size":8,"vocab_size":10,"max_position_embeddings":8})", "not divisible");
  bad("missing.json", R"({"model_type":"vit","hidden_size":64})", "num_hidden_layers");
  bad("type.json", R"({"model_type":"vit","hidden_size":"big"})", "wrong type");
  bad("arch.json", R"({"model_type":"gpt2","hidden_size":64,"num_hidden_layers":1,"num_attention_heads":2,
      "intermediate_size":8})", "not supported");
  bad("json.json", "{\"model_type\": ", "config");
  bad("labels.json", R"({"model_type":"vit","hidden_size":64,"num_hidden_layers":1,"num_attention_heads":2,
      "intermediate_size":8,"image_size":28,"patch_size":7,"id2label":{"0":"a","2":"b"}})", "id2label");
  EXPECT_QTX_ERROR(ModelConfig::load(d + "/none.json"), "none.json");
}

// A small vocabulary whose ids the expectations below are written against.
std::vector<std::string> tiny_vocab() {
  return {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",                 // 0-4
          "the",   "cafe",  "##s",   "un",    "##aff",  "##able", ",",   // 5-11
          "!",     "naive", "hello", "你",    "好",     "don",    "'",   // 12-18
          "t",     ".",     "a",     "##a",   "##e",    "resume", "$"};  // 19-25
}

TEST(Tokenizer, MatchesBertTokenizerOnTrickyStrings) {
  BertTokenizer tok = BertTokenizer::from_vocab(tiny_vocab());
  struct Case {
    std::string text;
    std::vector<int> ids;
  };
  std::vector<Case> cases = {
      {"Héllo, the CAFÉS!", {14, 11, 5, 6, 7, 12}},        // lower-case + strip accents + punctuation
      {"unaffable", {8, 9, 10}},                           // greedy longest match with ##
      {"naïve don't", {13, 17, 18, 19}},                   // apostrophe is punctuation
      {"你好world", {15, 16, 1}},                           // CJK chars split; unknown word -> [UNK]
      {"the\tcafe\x01s\xE2\x80\x8B.", {5, 6, 7, 20}},      // tab -> space, control + zero-width removed
      {"cafez", {1}},                                      // no "##z": the whole word is [UNK]
      {"[MASK] the[SEP]", {4, 5, 3}},                      // special tokens stay whole
      {"cafe\xCC\x81", {6}},                               // combining accent stripped (NFD)
      {"RÉSUMÉ$5", {24, 25, 1}},                            // '$' is punctuation; "5" unknown
      {"  \n ", {}},                                       // only whitespace -> nothing
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    EXPECT_EQ(tok.wordpiece_ids(c.text), c.ids);
  }
  // 100 characters are split into pieces; 101 make the word [UNK] (transformers' max_input_chars_per_word).
  std::vector<int> hundred = tok.wordpiece_ids(std::string(100, 'a'));
  ASSERT_EQ(hundred.size(), 100u);
  EXPECT_EQ(hundred[0], 21);
  EXPECT_EQ(hundred[99], 22);
  EXPECT_EQ(tok.wordpiece_ids(std::string(101, 'a')), (std::vector<int>{1}));
  // encode() adds [CLS]/[SEP] and truncates; empty text is an error.
  EXPECT_EQ(tok.encode("the cafes", 128), (std::vector<int>{2, 5, 6, 7, 3}));
  EXPECT_EQ(tok.encode("the cafes", 4), (std::vector<int>{2, 5, 6, 3}));
  EXPECT_QTX_ERROR(tok.encode(" \t ", 128), "empty text");
}

TEST(Tokenizer, CasedVocabularyKeepsCaseAndAccents) {
  BasicTokenizerOptions o;
  o.do_lower_case = false;
  o.strip_accents = false;
  EXPECT_EQ(basic_tokenize("Héllo, World!", o), (std::vector<std::string>{"Héllo", ",", "World", "!"}));
}

TEST(Tokenizer, VocabularyFileErrors) {
  std::string d = temp_dir("vocab");
  write_bytes(d + "/vocab.txt", "[PAD]\n[UNK]\n[SEP]\nthe\n");
  EXPECT_QTX_ERROR(BertTokenizer::load(d), "no [CLS] token");
  write_bytes(d + "/vocab.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\nthe\nthe\n");
  EXPECT_QTX_ERROR(BertTokenizer::load(d), "appears twice");
  write_bytes(d + "/vocab.txt", "");
  EXPECT_QTX_ERROR(BertTokenizer::load(d), "empty vocabulary");
  write_bytes(d + "/vocab.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\nthe\n");
  write_bytes(d + "/tokenizer_config.json", "{bad json");
  EXPECT_QTX_ERROR(BertTokenizer::load(d), "tokenizer_config.json");
  write_bytes(d + "/tokenizer_config.json", R"({"do_lower_case": false})");
  BertTokenizer t = BertTokenizer::load(d);
  EXPECT_EQ(t.tokenize("The the"), (std::vector<std::string>{"[UNK]", "the"}));
  EXPECT_QTX_ERROR(BertTokenizer::load(d + "/missing"), "vocab.txt");
}

TEST(Tokenizer, WordPieceTrainerIsDeterministicAndCoversCorpus) {
  std::vector<std::string> texts = {"the cat sat on the mat", "the cats sat", "a mat, a cat!", "unsatisfied cats"};
  auto v1 = build_wordpiece_vocab(texts, 60, {}, 1);
  auto v2 = build_wordpiece_vocab(texts, 60, {}, 1);
  EXPECT_EQ(v1, v2);
  ASSERT_GE(v1.size(), 5u);
  EXPECT_EQ(v1[0], "[PAD]");
  EXPECT_EQ(v1[2], "[CLS]");
  BertTokenizer tok = BertTokenizer::from_vocab(v1);
  for (const auto& t : texts)
    for (int id : tok.wordpiece_ids(t)) EXPECT_NE(id, tok.unk_id()) << t;
}

namespace {
std::string gzip(const std::string& raw) {
  std::string out(compressBound(raw.size()) + 64, '\0');
  z_stream z {};
  deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
  z.avail_in = static_cast<uInt>(raw.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}
std::string idx_bytes(std::vector<int> dims, const std::string& payload, int magic_type = 0x08) {
  std::string h = {0, 0, static_cast<char>(magic_type), static_cast<char>(dims.size())};
  for (int d : dims)
    for (int s = 24; s >= 0; s -= 8) h.push_back(static_cast<char>((d >> s) & 0xFF));
  return h + payload;
}
}  // namespace

TEST(Idx, ReadsPlainAndGzipAndRejectsCorruption) {
  std::string d = temp_dir("idx");
  std::string payload = {1, 2, 3, 4, 5, 6};
  write_bytes(d + "/a.idx", idx_bytes({2, 3}, payload));
  write_bytes(d + "/a.idx.gz", gzip(idx_bytes({2, 3}, payload)));
  for (const char* f : {"/a.idx", "/a.idx.gz"}) {
    IdxArray a = read_idx(d + f);
    EXPECT_EQ(a.dims, (std::vector<int>{2, 3}));
    EXPECT_EQ(a.data, (std::vector<uint8_t>{1, 2, 3, 4, 5, 6}));
  }
  write_bytes(d + "/short.idx", idx_bytes({2, 3}, payload.substr(0, 4)));
  EXPECT_QTX_ERROR(read_idx(d + "/short.idx"), "short.idx");
  write_bytes(d + "/long.idx", idx_bytes({2, 3}, payload + "x"));
  EXPECT_QTX_ERROR(read_idx(d + "/long.idx"), "long.idx");
  write_bytes(d + "/float.idx", idx_bytes({2}, "12345678", 0x0D));
  EXPECT_QTX_ERROR(read_idx(d + "/float.idx"), "float.idx");
  write_bytes(d + "/junk.idx.gz", "\x1f\x8b garbage");
  EXPECT_QTX_ERROR(read_idx(d + "/junk.idx.gz"), "junk.idx.gz");
  EXPECT_QTX_ERROR(read_idx(d + "/absent.idx"), "absent.idx");
}

TEST(Idx, FashionMnistFromDebianPackage) {
  std::string f = fashion_mnist_dir() + "/t10k-labels-idx1-ubyte.gz";
  if (!file_exists(f)) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  IdxArray a = read_idx(f);
  ASSERT_EQ(a.dims, (std::vector<int>{10000}));
  std::vector<int> count(10, 0);
  for (uint8_t l : a.data) ++count.at(l);
  for (int c : count) EXPECT_EQ(c, 1000);  // the test split is balanced
}

TEST(Images, PngRoundTripPreprocessAndErrors) {
  std::string d = temp_dir("images");
  Image g;
  g.height = 2;
  g.width = 2;
  g.channels = 1;
  g.pixels = {0, 255, 128, 64};
  write_png(d + "/g.png", g);
  Image r = read_image(d + "/g.png");
  EXPECT_EQ(r.pixels, g.pixels);
  ImagePreprocess pp;
  pp.height = pp.width = 2;
  pp.image_mean = {0.5f};
  pp.image_std = {0.5f};
  auto x = preprocess_image(r, pp, 1, "g.png");
  ASSERT_EQ(x.size(), 4u);
  EXPECT_FLOAT_EQ(x[0], -1.0f);
  EXPECT_FLOAT_EQ(x[1], 1.0f);
  // Gray -> RGB replicates the channel.
  pp.image_mean = {0.5f, 0.5f, 0.5f};
  pp.image_std = {0.5f, 0.5f, 0.5f};
  EXPECT_EQ(preprocess_image(r, pp, 3, "g.png").size(), 12u);
  // Resizing off: a wrong size is an error naming the file.
  pp.do_resize = false;
  pp.height = pp.width = 28;
  EXPECT_QTX_ERROR(preprocess_image(r, pp, 3, "g.png"), "g.png");
  write_bytes(d + "/bad.png", "\x89PNG not really");
  EXPECT_QTX_ERROR(read_image(d + "/bad.png"), "bad.png");
  write_bytes(d + "/x.gif", "GIF89a");
  EXPECT_QTX_ERROR(read_image(d + "/x.gif"), "x.gif");
  write_bytes(d + "/p.pgm", std::string("P5\n2 1\n255\n") + std::string("\x10\x20", 2));
  Image p = read_image(d + "/p.pgm");
  EXPECT_EQ(p.width, 2);
  EXPECT_EQ(p.pixels, (std::vector<uint8_t>{16, 32}));
  write_bytes(d + "/t.pgm", std::string("P5\n4 4\n255\n") + "ab");
  EXPECT_QTX_ERROR(read_image(d + "/t.pgm"), "t.pgm");
}

TEST(Austen, SplitsAreDisjointAndBalancedEnough) {
  TextSet tr = load_austen6("train"), dv = load_austen6("dev"), te = load_austen6("test");
  EXPECT_GT(tr.texts.size(), 5000u);
  EXPECT_GT(te.texts.size(), 500u);
  EXPECT_GT(dv.texts.size(), 500u);
  std::set<std::string> train_set(tr.texts.begin(), tr.texts.end());
  int leaked = 0;
  for (const auto& t : te.texts) leaked += train_set.count(t) ? 1 : 0;
  EXPECT_EQ(leaked, 0);
  std::vector<int> per_book(6, 0);
  for (int l : te.labels) ++per_book.at(static_cast<size_t>(l));
  for (int c : per_book) EXPECT_GT(c, 30);
  EXPECT_QTX_ERROR(load_austen6("validation"), "validation");
}

TEST(Tsv, UserLabelFileErrors) {
  std::string d = temp_dir("tsv");
  std::vector<std::string> labels = {"Emma", "Persuasion"};
  write_bytes(d + "/ok.tsv", "Emma\tA passage.\nPersuasion\tAnother one.\n");
  TextSet s = load_label_tsv(d + "/ok.tsv", labels);
  EXPECT_EQ(s.labels, (std::vector<int>{0, 1}));
  write_bytes(d + "/unknown.tsv", "Emma\tA passage.\nUlysses\tNo.\n");
  EXPECT_QTX_ERROR(load_label_tsv(d + "/unknown.tsv", labels), "unknown.tsv:2");
  write_bytes(d + "/notab.tsv", "Emma A passage.\n");
  EXPECT_QTX_ERROR(load_label_tsv(d + "/notab.tsv", labels), "notab.tsv:1");
  write_bytes(d + "/empty.tsv", "Emma\t   \n");
  EXPECT_QTX_ERROR(load_label_tsv(d + "/empty.tsv", labels), "empty.tsv:1");
}

TEST(Labels, NamesMatchIgnoringCaseAndPunctuation) {
  EXPECT_EQ(normalised_label("T-shirt/top"), "t-shirt-top");
  EXPECT_EQ(normalised_label("  t_shirt  TOP "), "t-shirt-top");
  EXPECT_EQ(normalised_label("Sense & Sensibility"), "sense-sensibility");
  EXPECT_EQ(normalised_label("Café"), "caf\xc3\xa9");  // UTF-8 bytes kept
  const std::vector<std::string> fm = fashion_mnist_labels();
  EXPECT_EQ(model_class_of("T-shirt-top", fm, LabelMatch::ByName, "w"), 0);
  EXPECT_EQ(model_class_of("ankle_boot", fm, LabelMatch::ByName, "w"), 9);
  EXPECT_QTX_ERROR(model_class_of("Spaceship", fm, LabelMatch::ByName, "where.tsv:3"), "where.tsv:3");
  try {  // the error names both sides: the label and the model's classes
    model_class_of("Spaceship", fm, LabelMatch::ByName, "w");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Spaceship"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("Ankle boot"), std::string::npos);
  }
  // Two model classes that normalise alike are ambiguous, not silently the first.
  EXPECT_QTX_ERROR(model_class_of("a b", {"A-B", "a_b"}, LabelMatch::ByName, "w"), "two of the model's classes");
}

TEST(Labels, ByIndexTakesIntegersLabelKAndBuiltinOrder) {
  const std::vector<std::string> generic = {"LABEL_0", "LABEL_1", "LABEL_2"};
  EXPECT_EQ(model_class_of("2", generic, LabelMatch::ByIndex, "w"), 2);
  EXPECT_EQ(model_class_of("LABEL_1", generic, LabelMatch::ByIndex, "w"), 1);
  EXPECT_EQ(model_class_of("label-0", generic, LabelMatch::ByIndex, "w"), 0);
  EXPECT_QTX_ERROR(model_class_of("3", generic, LabelMatch::ByIndex, "w"), "0..2");
  EXPECT_QTX_ERROR(model_class_of("Emma", generic, LabelMatch::ByIndex, "w"), "Emma");
  // A built-in set relabelled: by name into another class order, by index as it is.
  std::vector<int> labels = {0, 1, 2};
  map_set_labels(&labels, {"a", "b", "c"}, {"C", "A", "B"}, LabelMatch::ByName, "w");
  EXPECT_EQ(labels, (std::vector<int>{1, 2, 0}));
  labels = {0, 1, 2};
  map_set_labels(&labels, {"a", "b", "c"}, generic, LabelMatch::ByIndex, "w");
  EXPECT_EQ(labels, (std::vector<int>{0, 1, 2}));
  EXPECT_QTX_ERROR(map_set_labels(&labels, {"a", "b", "c"}, generic, LabelMatch::ByName, "--data x"), "LABEL_0");
  EXPECT_QTX_ERROR(map_set_labels(&labels, {"a", "b", "c"}, {"x", "y"}, LabelMatch::ByIndex, "--data x"), "only 2");
}

TEST(UserData, ImageFoldersLabelledFlatOrMixed) {
  const std::string d = temp_dir("user_images");
  const std::string img = std::string("P5\n2 1\n255\n") + std::string("\x10\x20", 2);
  std::filesystem::create_directories(d + "/labelled/T-shirt-top");
  std::filesystem::create_directories(d + "/labelled/Trouser");
  write_bytes(d + "/labelled/T-shirt-top/a.pgm", img);
  write_bytes(d + "/labelled/Trouser/b.pgm", img);
  write_bytes(d + "/labelled/Trouser/c.pgm", img);
  ImageSet s = load_image_folder(d + "/labelled", fashion_mnist_labels());
  EXPECT_EQ(s.labels, (std::vector<int>{0, 1, 1}));
  // Without id2label (calibration) the folder names are not matched.
  EXPECT_EQ(load_image_folder(d + "/labelled", {}).labels, (std::vector<int>{-1, -1, -1}));
  std::filesystem::create_directories(d + "/flat");
  write_bytes(d + "/flat/x.pgm", img);
  write_bytes(d + "/flat/y.pgm", img);
  EXPECT_EQ(load_image_folder(d + "/flat", fashion_mnist_labels()).labels, (std::vector<int>{-1, -1}));
  write_bytes(d + "/labelled/stray.pgm", img);
  EXPECT_QTX_ERROR(load_image_folder(d + "/labelled", fashion_mnist_labels()), "stray.pgm");
  write_bytes(d + "/flat/notes.txt", "not an image");
  EXPECT_QTX_ERROR(load_image_folder(d + "/flat", fashion_mnist_labels()), "notes.txt");
  std::filesystem::create_directories(d + "/empty");
  EXPECT_QTX_ERROR(load_image_folder(d + "/empty", fashion_mnist_labels()), "no images");
}

TEST(UserData, TextLinesAndTsvLabelModes) {
  const std::string d = temp_dir("user_text");
  write_bytes(d + "/p.txt", "First passage.\r\n\n   \nSecond passage.\n");
  TextSet t = load_text_lines(d + "/p.txt");
  EXPECT_EQ(t.texts, (std::vector<std::string>{"First passage.", "Second passage."}));
  EXPECT_EQ(t.labels, (std::vector<int>{-1, -1}));
  write_bytes(d + "/blank.txt", "\n  \n");
  EXPECT_QTX_ERROR(load_text_lines(d + "/blank.txt"), "no passages");
  write_bytes(d + "/idx.tsv", "1\tA passage.\nLABEL_0\tAnother one.\n");
  EXPECT_EQ(load_label_tsv(d + "/idx.tsv", {"LABEL_0", "LABEL_1"}, LabelMatch::ByIndex).labels, (std::vector<int>{1, 0}));
  EXPECT_QTX_ERROR(load_label_tsv(d + "/idx.tsv", {"Emma", "Persuasion"}), "idx.tsv:1");
  EXPECT_EQ(load_label_tsv(d + "/idx.tsv", {}).labels, (std::vector<int>{-1, -1}));
  write_bytes(d + "/names.tsv", "emma\tA passage.\nPERSUASION\tAnother one.\n");
  EXPECT_EQ(load_label_tsv(d + "/names.tsv", {"Emma", "Persuasion"}).labels, (std::vector<int>{0, 1}));
}

// qtx eval --exclude-calib: the kept indices are exactly those the calibration sample does not
// draw, ascending, and another seed keeps another set.
TEST(CalibrationSample, OutsideIndicesComplementTheSample) {
  const int total = 1000, n = 137;
  for (uint64_t seed : {0ull, 7ull}) {
    const auto drawn = qtx::sample_indices(total, n, seed);
    const auto keep = qtx::indices_outside_sample(total, n, seed);
    ASSERT_EQ(keep.size() + drawn.size(), static_cast<size_t>(total));
    std::set<int> all(drawn.begin(), drawn.end());
    ASSERT_EQ(all.size(), drawn.size());
    for (size_t i = 0; i < keep.size(); ++i) {
      EXPECT_EQ(all.count(keep[i]), 0u) << keep[i] << " is in the calibration sample";
      if (i > 0) {
        EXPECT_LT(keep[i - 1], keep[i]);
      }
      all.insert(keep[i]);
    }
    EXPECT_EQ(all.size(), static_cast<size_t>(total));
    const auto first = qtx::indices_outside_sample(total, n, seed, 10);
    EXPECT_EQ(first, std::vector<int>(keep.begin(), keep.begin() + 10));
  }
  EXPECT_NE(qtx::indices_outside_sample(total, n, 0), qtx::indices_outside_sample(total, n, 7));
  EXPECT_TRUE(qtx::indices_outside_sample(10, 10, 0).empty());
}
