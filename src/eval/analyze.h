// Where quantization error enters: per op site, the cosine similarity and SQNR between the
// float model's and the fake-quant model's outputs on the same inputs.
#pragma once
#include <string>
#include <vector>

namespace qtx {

class LabeledData;
class QuantizedModel;

struct SiteError {
  std::string site, kind;
  double cosine = 0, sqnr_db = 0;
};

std::vector<SiteError> analyze_sites(QuantizedModel& qm, const LabeledData& data, int limit, int batch_size);

}  // namespace qtx
