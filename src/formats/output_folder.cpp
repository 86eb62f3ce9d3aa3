#include "formats/output_folder.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "formats/error.h"

namespace qtx {

namespace fs = std::filesystem;

namespace {

std::string strip_slashes(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

}  // namespace

void check_output_folder(const std::string& out, const std::vector<std::string>& inputs, bool force,
                         const std::function<bool(const std::string&)>& is_ours, const std::string& flag) {
  if (out.empty()) fail(flag, "is empty");
  std::error_code ec;
  const fs::path o = strip_slashes(out);
  if (!fs::exists(o, ec)) return;
  if (!fs::is_directory(o, ec)) fail(flag + " " + out, "exists and is not a folder");
  if (force) return;
  for (const auto& in : inputs)
    if (!in.empty() && fs::exists(in, ec) && fs::equivalent(o, in, ec))
      fail(flag + " " + out, "is the input folder " + in + " itself; writing there would replace it (choose another folder, or --force)");
  if (!fs::is_empty(o, ec) && !is_ours(o.string()))
    fail(flag + " " + out, "exists and is not a qtx output of this kind; refusing to replace it (choose another folder, or --force)");
}

OutputFolder::OutputFolder(const std::string& out) : out_(strip_slashes(out)) {
  if (out_.empty() || out_ == "/" || out_ == "." || out_ == "..") fail(out, "cannot be replaced as an output folder");
  tmp_ = out_ + ".tmp-" + std::to_string(getpid());
  std::error_code ec;
  fs::remove_all(tmp_, ec);
  fs::create_directories(tmp_, ec);
  if (ec) fail(tmp_, "cannot create the temporary output folder: " + ec.message());
}

OutputFolder::~OutputFolder() {
  if (committed_) return;
  std::error_code ec;
  fs::remove_all(tmp_, ec);
}

void OutputFolder::commit() {
  if (const char* f = std::getenv("QTX_TEST_FAIL_COMMIT"); f && std::strcmp(f, "1") == 0)
    fail(out_, "injected failure before the output folder was put in place (QTX_TEST_FAIL_COMMIT=1)");
  std::error_code ec;
  if (fs::exists(out_, ec)) {
    // One atomic swap: at every moment `out` is either the old folder or the new one, whole.
    if (renameat2(AT_FDCWD, tmp_.c_str(), AT_FDCWD, out_.c_str(), RENAME_EXCHANGE) != 0) {
      // A file system without RENAME_EXCHANGE: move the old folder aside first.
      const std::string old = out_ + ".old-" + std::to_string(getpid());
      fs::remove_all(old, ec);
      if (std::rename(out_.c_str(), old.c_str()) != 0) fail(out_, std::string("cannot move the old folder aside: ") + std::strerror(errno));
      if (std::rename(tmp_.c_str(), out_.c_str()) != 0) {
        const std::string why = std::strerror(errno);
        std::rename(old.c_str(), out_.c_str());
        fail(out_, "cannot put the new folder in place: " + why);
      }
      fs::remove_all(old, ec);
    } else {
      fs::remove_all(tmp_, ec);  // now the old folder
    }
  } else if (std::rename(tmp_.c_str(), out_.c_str()) != 0) {
    fail(out_, std::string("cannot put the new folder in place: ") + std::strerror(errno));
  }
  committed_ = true;
}

}  // namespace qtx
