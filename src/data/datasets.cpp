#include "data/datasets.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <numeric>
#include <random>
#include <sstream>

#include "data/idx.h"
#include "formats/error.h"
#include "formats/hf_config.h"

#ifndef QTX_SOURCE_DIR
#define QTX_SOURCE_DIR "."
#endif

namespace qtx {

std::string data_root() {
  const char* env = std::getenv("QTX_DATA_DIR");
  return env && *env ? std::string(env) : std::string(QTX_SOURCE_DIR) + "/data";
}

std::string fashion_mnist_dir() {
  const char* env = std::getenv("QTX_FMNIST_DIR");
  return env && *env ? std::string(env) : std::string("/usr/share/datasets/fashion-mnist");
}

const std::vector<std::string>& fashion_mnist_labels() {
  static const std::vector<std::string> k = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                             "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return k;
}

ImageSet load_fashion_mnist(const std::string& split) {
  std::string prefix;
  if (split == "train") prefix = "train";
  else if (split == "test") prefix = "t10k";
  else fail("fashion-mnist", "unknown split '" + split + "' (train | test)");
  const std::string dir = fashion_mnist_dir();
  const std::string ipath = dir + "/" + prefix + "-images-idx3-ubyte.gz";
  const std::string lpath = dir + "/" + prefix + "-labels-idx1-ubyte.gz";
  IdxArray im = read_idx(ipath), lb = read_idx(lpath);
  if (im.dims.size() != 3) fail(ipath, "expected a 3-d image array");
  if (lb.dims.size() != 1) fail(lpath, "expected a 1-d label array");
  if (im.dims[0] != lb.dims[0]) fail(lpath, "label count does not match image count in " + ipath);
  ImageSet s;
  s.label_names = fashion_mnist_labels();
  const size_t px = static_cast<size_t>(im.dims[1]) * im.dims[2];
  for (int i = 0; i < im.dims[0]; ++i) {
    if (lb.data[i] >= 10) fail(lpath, "label " + std::to_string(lb.data[i]) + " at index " + std::to_string(i) + " is out of range");
    Image img;
    img.height = im.dims[1];
    img.width = im.dims[2];
    img.channels = 1;
    img.pixels.assign(im.data.begin() + static_cast<std::ptrdiff_t>(i * px),
                      im.data.begin() + static_cast<std::ptrdiff_t>((i + 1) * px));
    s.images.push_back(std::move(img));
    s.labels.push_back(lb.data[i]);
  }
  return s;
}

namespace {

struct AustenBook {
  const char* file;
  const char* title;
};
constexpr AustenBook kBooks[] = {
    {"sense_and_sensibility", "Sense & Sensibility"}, {"pride_and_prejudice", "Pride & Prejudice"},
    {"mansfield_park", "Mansfield Park"},             {"emma", "Emma"},
    {"northanger_abbey", "Northanger Abbey"},         {"persuasion", "Persuasion"},
};
constexpr int kPassageWords = 64;

bool is_chapter_heading(const std::string& line) {
  return line.rfind("CHAPTER", 0) == 0 || line.rfind("Chapter", 0) == 0;
}

}  // namespace

const std::vector<std::string>& austen_labels() {
  static const std::vector<std::string> k = [] {
    std::vector<std::string> v;
    for (const auto& b : kBooks) v.push_back(b.title);
    return v;
  }();
  return k;
}

TextSet load_austen6(const std::string& split) {
  int want;
  if (split == "train") want = 0;
  else if (split == "dev") want = 1;
  else if (split == "test") want = 2;
  else fail("austen6", "unknown split '" + split + "' (train | dev | test)");
  TextSet s;
  s.label_names = austen_labels();
  for (int b = 0; b < 6; ++b) {
    const std::string path = data_root() + "/austen/" + kBooks[b].file + ".txt";
    std::istringstream in(read_text_file(path));
    std::string line;
    int chapter = -1;  // text before the first chapter heading (title page) is skipped
    std::vector<std::string> words;
    auto flush = [&]() {
      if (chapter >= 0) {
        int k = chapter % 10, sp = k == 9 ? 2 : (k == 8 ? 1 : 0);
        if (sp == want) {
          for (size_t i = 0; i < words.size(); i += kPassageWords) {
            size_t end = std::min(words.size(), i + kPassageWords);
            if (end - i < kPassageWords / 4) break;  // drop a tiny tail
            std::string text;
            for (size_t j = i; j < end; ++j) text += (j > i ? " " : "") + words[j];
            s.texts.push_back(std::move(text));
            s.labels.push_back(b);
          }
        }
      }
      words.clear();
    };
    while (std::getline(in, line)) {
      if (is_chapter_heading(line)) {
        flush();
        ++chapter;
        continue;
      }
      if (line.rfind("VOLUME", 0) == 0 || line.rfind("THE END", 0) == 0) continue;
      std::istringstream ws(line);
      std::string w;
      while (ws >> w) words.push_back(w);
    }
    flush();
    if (chapter < 0) fail(path, "no chapter headings found");
  }
  return s;
}

std::string normalised_label(const std::string& name) {
  std::string out;
  bool gap = false;
  for (unsigned char c : name) {
    const bool word = std::isalnum(c) || c >= 0x80;
    if (!word) {
      gap = !out.empty();
      continue;
    }
    if (gap) out += '-';
    gap = false;
    out += static_cast<char>(c < 0x80 ? std::tolower(c) : c);
  }
  return out;
}

namespace {

std::string joined(const std::vector<std::string>& names) {
  std::string s;
  for (size_t i = 0; i < names.size(); ++i) s += (i ? ", " : "") + names[i];
  return s;
}

// k for "k" or "LABEL_k" (any case, any separator), else -1.
int64_t label_index(const std::string& label) {
  std::string n = normalised_label(label);
  if (n.rfind("label-", 0) == 0) n = n.substr(6);
  if (n.empty() || n.size() > 9 || n.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(n);
}

const char* kMatchRule =
    "names are compared ignoring case and punctuation; --labels-by-index takes class k for a label written k or LABEL_k";

}  // namespace

int model_class_of(const std::string& label, const std::vector<std::string>& id2label, LabelMatch match,
                   const std::string& where) {
  if (match == LabelMatch::ByIndex) {
    const int64_t k = label_index(label);
    if (k < 0 || k >= static_cast<int64_t>(id2label.size()))
      fail(where, "label '" + label + "' is not a class index 0.." + std::to_string(id2label.size() - 1) +
                      " (written k or LABEL_k) of the model's " + std::to_string(id2label.size()) + " classes");
    return static_cast<int>(k);
  }
  const std::string n = normalised_label(label);
  int found = -1;
  for (size_t i = 0; i < id2label.size(); ++i)
    if (normalised_label(id2label[i]) == n) {
      if (found >= 0) fail(where, "label '" + label + "' matches two of the model's classes, '" + id2label[found] + "' and '" +
                                      id2label[i] + "' (" + kMatchRule + ")");
      found = static_cast<int>(i);
    }
  if (found < 0)
    fail(where, "label '" + label + "' is none of the model's id2label (" + joined(id2label) + "); " + kMatchRule);
  return found;
}

void map_set_labels(std::vector<int>* labels, const std::vector<std::string>& set_names,
                    const std::vector<std::string>& id2label, LabelMatch match, const std::string& where) {
  std::vector<int> to(set_names.size());
  for (size_t k = 0; k < set_names.size(); ++k) {
    if (match == LabelMatch::ByIndex) {
      if (k >= id2label.size())
        fail(where, "the data has " + std::to_string(set_names.size()) + " classes (" + joined(set_names) +
                        ") but the model only " + std::to_string(id2label.size()) + " (" + joined(id2label) + ")");
      to[k] = static_cast<int>(k);
      continue;
    }
    try {
      to[k] = model_class_of(set_names[k], id2label, match, where);
    } catch (const Error&) {
      fail(where, "the data's classes (" + joined(set_names) + ") are not the model's id2label (" + joined(id2label) +
                      "); " + kMatchRule);
    }
  }
  for (int& l : *labels) l = to[static_cast<size_t>(l)];
}

TextSet load_label_tsv(const std::string& path, const std::vector<std::string>& id2label, LabelMatch match) {
  std::istringstream in(read_text_file(path));
  TextSet s;
  s.label_names = id2label;
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    const std::string where = path + ":" + std::to_string(lineno);
    size_t tab = line.find('\t');
    if (tab == std::string::npos) fail(where, "expected 'label<TAB>text'");
    std::string label = line.substr(0, tab), text = line.substr(tab + 1);
    const int cls = id2label.empty() ? -1 : model_class_of(label, id2label, match, where);
    if (text.find_first_not_of(" \t") == std::string::npos) fail(where, "empty text");
    s.texts.push_back(text);
    s.labels.push_back(cls);
  }
  if (s.texts.empty()) fail(path, "no examples");
  return s;
}

TextSet load_text_lines(const std::string& path) {
  std::istringstream in(read_text_file(path));
  TextSet s;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    s.texts.push_back(line);
    s.labels.push_back(-1);
  }
  if (s.texts.empty()) fail(path, "no passages (expected one passage of text per line)");
  return s;
}

namespace {
std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  if (!d) fail(dir, "cannot open folder");
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}
bool is_dir(const std::string& p) {
  struct stat st {};
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
}  // namespace

ImageSet load_image_folder(const std::string& dir, const std::vector<std::string>& id2label, LabelMatch match) {
  ImageSet s;
  s.label_names = id2label;
  std::vector<std::string> folders, files;
  for (const auto& name : list_dir(dir)) (is_dir(dir + "/" + name) ? folders : files).push_back(name);
  if (!folders.empty() && !files.empty())
    fail(dir + "/" + files.front(), "a folder of per-label sub-folders holds no files of its own (or use a flat folder "
                                    "of images without sub-folders, for unlabeled data)");
  if (folders.empty()) {  // unlabeled
    for (const auto& f : files) {
      s.images.push_back(read_image(dir + "/" + f));
      s.labels.push_back(-1);
    }
  }
  for (const auto& sub : folders) {
    const std::string p = dir + "/" + sub;
    const int label = id2label.empty() ? -1 : model_class_of(sub, id2label, match, p);
    for (const auto& f : list_dir(p)) {
      s.images.push_back(read_image(p + "/" + f));
      s.labels.push_back(label);
    }
  }
  if (s.images.empty()) fail(dir, "no images found (expected one sub-folder of PNG/PGM files per label, or PNG/PGM files)");
  return s;
}

std::vector<int> sample_indices(int total, int n, uint64_t seed) {
  std::vector<int> idx(static_cast<size_t>(total));
  std::iota(idx.begin(), idx.end(), 0);
  if (n >= total) return idx;
  std::mt19937_64 rng(seed);
  for (int i = 0; i < n; ++i) {  // partial Fisher-Yates with a portable draw
    int j = i + static_cast<int>(rng() % static_cast<uint64_t>(total - i));
    std::swap(idx[static_cast<size_t>(i)], idx[static_cast<size_t>(j)]);
  }
  idx.resize(static_cast<size_t>(n));
  return idx;
}

std::vector<int> indices_outside_sample(int total, int n, uint64_t seed, int limit) {
  std::vector<char> drawn(static_cast<size_t>(std::max(total, 0)), 0);
  for (int i : sample_indices(total, n, seed)) drawn[static_cast<size_t>(i)] = 1;
  std::vector<int> keep;
  for (int i = 0; i < total && (limit <= 0 || static_cast<int>(keep.size()) < limit); ++i)
    if (!drawn[static_cast<size_t>(i)]) keep.push_back(i);
  return keep;
}

}  // namespace qtx
