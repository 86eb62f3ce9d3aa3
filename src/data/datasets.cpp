#include "data/datasets.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
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

TextSet load_label_tsv(const std::string& path, const std::vector<std::string>& id2label) {
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
    auto it = std::find(id2label.begin(), id2label.end(), label);
    if (it == id2label.end()) fail(where, "label '" + label + "' is not one of the model's id2label names");
    if (text.find_first_not_of(" \t") == std::string::npos) fail(where, "empty text");
    s.texts.push_back(text);
    s.labels.push_back(static_cast<int>(it - id2label.begin()));
  }
  if (s.texts.empty()) fail(path, "no examples");
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

ImageSet load_image_folder(const std::string& dir, const std::vector<std::string>& id2label) {
  ImageSet s;
  s.label_names = id2label;
  for (const auto& sub : list_dir(dir)) {
    const std::string p = dir + "/" + sub;
    if (!is_dir(p)) continue;
    // Label folder names cannot contain '/', so "T-shirt/top" may be written "T-shirt_top".
    int label = -1;
    for (size_t i = 0; i < id2label.size(); ++i) {
      std::string n = id2label[i];
      std::replace(n.begin(), n.end(), '/', '_');
      if (sub == id2label[i] || sub == n) label = static_cast<int>(i);
    }
    if (label < 0) fail(p, "folder name is not one of the model's id2label names");
    for (const auto& f : list_dir(p)) {
      s.images.push_back(read_image(p + "/" + f));
      s.labels.push_back(label);
    }
  }
  if (s.images.empty()) fail(dir, "no images found (expected one sub-folder of PNG files per label)");
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
