// Writing a whole output folder without ever losing the one it replaces (docs/ROBUSTNESS.md):
// everything goes into a temporary sibling folder, which takes the output's place in one rename
// only once complete. A failed or interrupted run leaves the previous folder exactly as it was.
#pragma once
#include <functional>
#include <string>
#include <vector>

namespace qtx {

// Checks `out` before any work is done. It may not resolve (symlinks, "m/" vs "./m") to one of
// `inputs` (that would replace the input itself), nor be an existing non-empty folder that
// `is_ours` does not recognise (another model, a source tree), unless `force`; `flag` names the
// option in the error ("--out").
void check_output_folder(const std::string& out, const std::vector<std::string>& inputs, bool force,
                         const std::function<bool(const std::string&)>& is_ours, const std::string& flag = "--out");

class OutputFolder {
 public:
  // Creates the temporary sibling "<out>.tmp-<pid>" (a stale one from a killed run is removed).
  explicit OutputFolder(const std::string& out);
  ~OutputFolder();  // not committed: the temporary folder is removed, `out` untouched
  OutputFolder(const OutputFolder&) = delete;
  OutputFolder& operator=(const OutputFolder&) = delete;

  const std::string& path() const { return tmp_; }  // write here
  const std::string& out() const { return out_; }
  // Puts the finished folder in place: swapped with an existing `out` in one rename (the old
  // one then removed), or renamed to `out`. QTX_TEST_FAIL_COMMIT=1 (tests only) fails here, as a
  // full disk or a kill would, to show that nothing reached `out`.
  void commit();

 private:
  std::string out_, tmp_;
  bool committed_ = false;
};

}  // namespace qtx
