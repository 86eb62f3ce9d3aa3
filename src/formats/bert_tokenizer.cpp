#include "formats/bert_tokenizer.h"

#include <unicode/normalizer2.h>
#include <unicode/locid.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include <algorithm>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "formats/error.h"
#include "formats/hf_config.h"

namespace qtx {
namespace {

// transformers' BertTokenizer marks words longer than this many code points [UNK].
constexpr size_t kMaxCharsPerWord = 100;
const char* const kSpecialTokens[] = {"[CLS]", "[SEP]", "[UNK]", "[PAD]", "[MASK]"};

std::u32string to_u32(const icu::UnicodeString& s) {
  std::u32string out;
  for (int32_t i = 0; i < s.length();) {
    UChar32 c = s.char32At(i);
    out.push_back(static_cast<char32_t>(c));
    i += U16_LENGTH(c);
  }
  return out;
}

icu::UnicodeString from_u32(const std::u32string& s) {
  icu::UnicodeString out;
  for (char32_t c : s) out.append(static_cast<UChar32>(c));
  return out;
}

std::string to_utf8(const std::u32string& s) {
  std::string out;
  from_u32(s).toUTF8String(out);
  return out;
}

bool is_whitespace(char32_t c) {
  if (c == U' ' || c == U'\t' || c == U'\n' || c == U'\r') return true;
  return u_charType(static_cast<UChar32>(c)) == U_SPACE_SEPARATOR;
}

bool is_control(char32_t c) {
  if (c == U'\t' || c == U'\n' || c == U'\r') return false;
  switch (u_charType(static_cast<UChar32>(c))) {  // Python: category starts with "C"
    case U_CONTROL_CHAR: case U_FORMAT_CHAR: case U_SURROGATE: case U_PRIVATE_USE_CHAR:
    case U_UNASSIGNED: return true;
    default: return false;
  }
}

bool is_punctuation(char32_t c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126))
    return true;
  switch (u_charType(static_cast<UChar32>(c))) {  // Python: category starts with "P"
    case U_DASH_PUNCTUATION: case U_START_PUNCTUATION: case U_END_PUNCTUATION:
    case U_CONNECTOR_PUNCTUATION: case U_OTHER_PUNCTUATION: case U_INITIAL_PUNCTUATION:
    case U_FINAL_PUNCTUATION: return true;
    default: return false;
  }
}

bool is_cjk(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) ||
         (c >= 0x2B820 && c <= 0x2CEAF) || (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

std::vector<std::u32string> split_whitespace(const std::u32string& s) {
  std::vector<std::u32string> out;
  std::u32string cur;
  for (char32_t c : s) {
    if (is_whitespace(c)) {
      if (!cur.empty()) out.push_back(std::move(cur));
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

std::u32string normalize(const icu::Normalizer2* n, const std::u32string& s) {
  UErrorCode err = U_ZERO_ERROR;
  icu::UnicodeString out = n->normalize(from_u32(s), err);
  if (U_FAILURE(err)) return s;
  return to_u32(out);
}

std::u32string strip_accents(const std::u32string& s) {
  UErrorCode err = U_ZERO_ERROR;
  const icu::Normalizer2* nfd = icu::Normalizer2::getNFDInstance(err);
  std::u32string out;
  for (char32_t c : normalize(nfd, s))
    if (u_charType(static_cast<UChar32>(c)) != U_NON_SPACING_MARK) out.push_back(c);
  return out;
}

bool is_special(const std::string& t) {
  for (const char* s : kSpecialTokens)
    if (t == s) return true;
  return false;
}

// Basic tokenization of one stretch of text that holds no special token.
void basic_tokenize_into(const std::string& text, const BasicTokenizerOptions& opt,
                         std::vector<std::string>* out) {
  std::u32string cleaned;
  for (char32_t c : to_u32(icu::UnicodeString::fromUTF8(text))) {
    if (c == 0 || c == 0xFFFD || is_control(c)) continue;
    if (is_whitespace(c)) {
      cleaned.push_back(U' ');
    } else if (opt.tokenize_chinese_chars && is_cjk(c)) {
      cleaned.push_back(U' ');
      cleaned.push_back(c);
      cleaned.push_back(U' ');
    } else {
      cleaned.push_back(c);
    }
  }
  UErrorCode err = U_ZERO_ERROR;
  cleaned = normalize(icu::Normalizer2::getNFCInstance(err), cleaned);
  for (std::u32string tok : split_whitespace(cleaned)) {
    if (opt.do_lower_case) {
      icu::UnicodeString u = from_u32(tok);
      u.toLower(icu::Locale::getRoot());
      tok = to_u32(u);
    }
    if (opt.strip_accents) tok = strip_accents(tok);
    std::u32string cur;
    for (char32_t c : tok) {
      if (is_punctuation(c)) {
        if (!cur.empty()) out->push_back(to_utf8(cur));
        cur.clear();
        out->push_back(to_utf8(std::u32string(1, c)));
      } else {
        cur.push_back(c);
      }
    }
    if (!cur.empty()) out->push_back(to_utf8(cur));
  }
}

}  // namespace

std::vector<std::string> basic_tokenize(const std::string& text, const BasicTokenizerOptions& opt) {
  // Special tokens written in the text stay whole, as transformers' added-token split does.
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t best = std::string::npos, best_len = 0;
    for (const char* s : kSpecialTokens) {
      size_t p = text.find(s, pos);
      if (p < best) {
        best = p;
        best_len = std::char_traits<char>::length(s);
      }
    }
    if (best == std::string::npos) {
      basic_tokenize_into(text.substr(pos), opt, &out);
      break;
    }
    basic_tokenize_into(text.substr(pos, best - pos), opt, &out);
    out.push_back(text.substr(best, best_len));
    pos = best + best_len;
  }
  return out;
}

BertTokenizer BertTokenizer::from_vocab(std::vector<std::string> tokens, BasicTokenizerOptions opt) {
  BertTokenizer t;
  t.vocab_ = std::move(tokens);
  t.opt_ = opt;
  t.index("vocabulary");
  return t;
}

void BertTokenizer::index(const std::string& where) {
  ids_.clear();
  for (size_t i = 0; i < vocab_.size(); ++i) {
    if (!ids_.emplace(vocab_[i], static_cast<int>(i)).second)
      fail(where, "token '" + vocab_[i] + "' appears twice (line " + std::to_string(i + 1) + ")");
  }
  cls_ = id("[CLS]");
  sep_ = id("[SEP]");
  unk_ = id("[UNK]");
  pad_ = id("[PAD]");
  mask_ = id("[MASK]");
  for (const char* s : {"[CLS]", "[SEP]", "[UNK]", "[PAD]"})
    if (id(s) < 0) fail(where, std::string("vocabulary has no ") + s + " token");
}

BertTokenizer BertTokenizer::load(const std::string& model_dir) {
  const std::string vpath = model_dir + "/vocab.txt", cpath = model_dir + "/tokenizer_config.json";
  std::string vocab_text = read_text_file(vpath);
  std::optional<std::string> config_text;
  if (file_exists(cpath)) config_text = read_text_file(cpath);
  return parse(vocab_text, config_text, vpath, cpath);
}

BertTokenizer BertTokenizer::parse(const std::string& vocab_text, const std::optional<std::string>& config_text,
                                   const std::string& vpath, const std::string& cpath) {
  std::vector<std::string> tokens;
  std::istringstream in(vocab_text);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    tokens.push_back(line);  // transformers keeps the line minus its newline
  }
  if (tokens.empty()) fail(vpath, "empty vocabulary");
  BasicTokenizerOptions opt;
  if (config_text) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(*config_text);
    } catch (const nlohmann::json::exception& e) {
      fail(cpath, std::string("invalid JSON: ") + e.what());
    }
    if (j.contains("do_lower_case") && j["do_lower_case"].is_boolean()) opt.do_lower_case = j["do_lower_case"];
    opt.strip_accents = opt.do_lower_case;
    if (j.contains("strip_accents") && j["strip_accents"].is_boolean()) opt.strip_accents = j["strip_accents"];
    if (j.contains("tokenize_chinese_chars") && j["tokenize_chinese_chars"].is_boolean())
      opt.tokenize_chinese_chars = j["tokenize_chinese_chars"];
  }
  BertTokenizer t;
  t.vocab_ = std::move(tokens);
  t.opt_ = opt;
  t.index(vpath);
  return t;
}

int BertTokenizer::id(const std::string& token) const {
  auto it = ids_.find(token);
  return it == ids_.end() ? -1 : it->second;
}

std::vector<std::string> BertTokenizer::tokenize(const std::string& text) const {
  std::vector<std::string> out;
  for (const std::string& word : basic_tokenize(text, opt_)) {
    if (is_special(word)) {
      out.push_back(word);
      continue;
    }
    std::u32string chars = to_u32(icu::UnicodeString::fromUTF8(word));
    if (chars.size() > kMaxCharsPerWord) {
      out.push_back("[UNK]");
      continue;
    }
    std::vector<std::string> pieces;
    size_t start = 0;
    bool bad = false;
    while (start < chars.size()) {
      size_t end = chars.size();
      std::string found;
      while (start < end) {
        std::string sub = to_utf8(chars.substr(start, end - start));
        if (start > 0) sub = "##" + sub;
        if (ids_.count(sub)) {
          found = std::move(sub);
          break;
        }
        --end;
      }
      if (found.empty()) {
        bad = true;
        break;
      }
      pieces.push_back(std::move(found));
      start = end;
    }
    if (bad) {
      out.push_back("[UNK]");
    } else {
      out.insert(out.end(), pieces.begin(), pieces.end());
    }
  }
  return out;
}

std::vector<int> BertTokenizer::wordpiece_ids(const std::string& text) const {
  std::vector<int> ids;
  for (const auto& p : tokenize(text)) {
    int i = id(p);
    ids.push_back(i < 0 ? unk_ : i);
  }
  return ids;
}

std::vector<int> BertTokenizer::encode(const std::string& text, int max_len) const {
  std::vector<int> ids = wordpiece_ids(text);
  if (ids.empty()) fail("tokenizer", "empty text (nothing to classify after tokenization)");
  if (max_len < 3) fail("tokenizer", "max length must be at least 3");
  if (static_cast<int>(ids.size()) > max_len - 2) ids.resize(static_cast<size_t>(max_len - 2));
  ids.insert(ids.begin(), cls_);
  ids.push_back(sep_);
  return ids;
}

void BertTokenizer::save(const std::string& model_dir, int model_max_length) const {
  std::string text;
  for (const auto& t : vocab_) text += t + "\n";
  write_text_file(model_dir + "/vocab.txt", text);
  nlohmann::json j = {{"tokenizer_class", "BertTokenizer"}, {"do_lower_case", opt_.do_lower_case},
                      {"strip_accents", opt_.strip_accents}, {"tokenize_chinese_chars", opt_.tokenize_chinese_chars},
                      {"model_max_length", model_max_length}, {"unk_token", "[UNK]"}, {"sep_token", "[SEP]"},
                      {"pad_token", "[PAD]"}, {"cls_token", "[CLS]"}, {"mask_token", "[MASK]"}};
  write_text_file(model_dir + "/tokenizer_config.json", j.dump(2) + "\n");
}

std::vector<std::string> build_wordpiece_vocab(const std::vector<std::string>& texts, int vocab_size,
                                               const BasicTokenizerOptions& opt, int min_frequency) {
  std::map<std::string, int64_t> word_counts;  // ordered: determinism
  for (const auto& t : texts)
    for (const auto& w : basic_tokenize(t, opt))
      if (!is_special(w)) ++word_counts[w];

  std::vector<std::string> vocab = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  std::unordered_map<std::string, int> ids;
  for (size_t i = 0; i < vocab.size(); ++i) ids[vocab[i]] = static_cast<int>(i);
  auto intern = [&](const std::string& s) {
    auto it = ids.find(s);
    if (it != ids.end()) return it->second;
    ids[s] = static_cast<int>(vocab.size());
    vocab.push_back(s);
    return static_cast<int>(vocab.size() - 1);
  };

  // Alphabet first (sorted for determinism), then merges.
  std::set<std::string> alphabet;
  std::vector<std::vector<std::string>> word_chars;
  std::vector<int64_t> freq;
  for (const auto& [w, n] : word_counts) {
    std::u32string cs = to_u32(icu::UnicodeString::fromUTF8(w));
    if (cs.size() > kMaxCharsPerWord) continue;
    std::vector<std::string> parts;
    for (size_t i = 0; i < cs.size(); ++i) {
      std::string c = to_utf8(cs.substr(i, 1));
      parts.push_back(i == 0 ? c : "##" + c);
      alphabet.insert(parts.back());
    }
    word_chars.push_back(std::move(parts));
    freq.push_back(n);
  }
  for (const auto& a : alphabet) intern(a);
  std::vector<std::vector<int>> words;
  for (const auto& parts : word_chars) {
    std::vector<int> sym;
    for (const auto& p : parts) sym.push_back(ids.at(p));
    words.push_back(std::move(sym));
  }

  using Pair = std::pair<int, int>;
  std::map<Pair, int64_t> count;
  std::map<Pair, std::set<int>> where;
  std::set<std::tuple<int64_t, int, int>> ranked;  // (-count, a, b)
  auto bump = [&](const Pair& p, int64_t delta, int w) {
    int64_t& c = count[p];
    if (c > 0) ranked.erase({-c, p.first, p.second});
    c += delta;
    if (c > 0) ranked.insert({-c, p.first, p.second});
    if (delta > 0) where[p].insert(w);
  };
  for (size_t w = 0; w < words.size(); ++w)
    for (size_t i = 0; i + 1 < words[w].size(); ++i) bump({words[w][i], words[w][i + 1]}, freq[w], static_cast<int>(w));

  while (static_cast<int>(vocab.size()) < vocab_size && !ranked.empty()) {
    auto [negc, a, b] = *ranked.begin();
    if (-negc < min_frequency) break;
    const std::string& sb = vocab[static_cast<size_t>(b)];
    std::string merged = vocab[static_cast<size_t>(a)] + (sb.rfind("##", 0) == 0 ? sb.substr(2) : sb);
    int m = intern(merged);
    std::set<int> ws = where[{a, b}];
    for (int w : ws) {
      auto& sym = words[static_cast<size_t>(w)];
      for (size_t i = 0; i + 1 < sym.size(); ++i) bump({sym[i], sym[i + 1]}, -freq[static_cast<size_t>(w)], w);
      std::vector<int> next;
      for (size_t i = 0; i < sym.size(); ++i) {
        if (i + 1 < sym.size() && sym[i] == a && sym[i + 1] == b) {
          next.push_back(m);
          ++i;
        } else {
          next.push_back(sym[i]);
        }
      }
      sym = std::move(next);
      for (size_t i = 0; i + 1 < sym.size(); ++i) bump({sym[i], sym[i + 1]}, freq[static_cast<size_t>(w)], w);
    }
    where.erase({a, b});
    count.erase({a, b});
  }
  return vocab;
}

}  // namespace qtx
