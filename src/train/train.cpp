#include "train/train.h"
#include "train/augment.h"
#include "train/distill.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>

#include "data/datasets.h"
#include "eval/evaluate.h"
#include "formats/error.h"
#include "formats/output_folder.h"
#include "formats/hf_config.h"
#include "formats/bert_tokenizer.h"
#include "models/model.h"
#include "tasks/labeled_data.h"

namespace qtx {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Fashion-MNIST statistics of the training split (pixel / 255).
constexpr float kFmnistMean = 0.2860f, kFmnistStd = 0.3530f;

ImagePreprocess fmnist_preprocess() {
  ImagePreprocess pp;
  pp.image_mean = {kFmnistMean};
  pp.image_std = {kFmnistStd};
  pp.height = pp.width = 28;
  return pp;
}

struct Schedule {
  double lr, min_frac;
  int64_t warmup, total;
  double at(int64_t step) const {
    if (step < warmup) return lr * (step + 1) / static_cast<double>(warmup);
    double p = static_cast<double>(step - warmup) / std::max<int64_t>(1, total - warmup);
    return lr * (min_frac + (1 - min_frac) * 0.5 * (1 + std::cos(M_PI * std::min(1.0, p))));
  }
};

// AdamW with no weight decay on biases, LayerNorm parameters and embeddings-like vectors.
std::unique_ptr<torch::optim::AdamW> make_optimizer(TransformerModel& m, const TrainOptions& o) {
  std::vector<at::Tensor> decay, no_decay;
  for (auto& [name, p] : m.hf_parameters()) {
    p.set_requires_grad(true);
    (p.dim() >= 2 && name.find("position_embeddings") == std::string::npos && name.find("cls_token") == std::string::npos
         ? decay
         : no_decay)
        .push_back(p);
  }
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(
                                 torch::optim::AdamWOptions(o.lr).weight_decay(o.weight_decay)));
  groups.emplace_back(no_decay, std::make_unique<torch::optim::AdamWOptions>(
                                    torch::optim::AdamWOptions(o.lr).weight_decay(0.0)));
  return std::make_unique<torch::optim::AdamW>(groups, torch::optim::AdamWOptions(o.lr));
}

void set_lr(torch::optim::AdamW& opt, double lr) {
  for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
}

struct Checkpoint {
  std::string dir;
  int next_epoch = 0;
  int64_t step = 0;
};

std::string ckpt_dir(const TrainOptions& o) { return o.out + "/checkpoint"; }

// Saves model (+ optimizer + progress) so a killed run resumes at the next epoch.
void save_checkpoint(TransformerModel& m, torch::optim::AdamW& opt, const TrainOptions& o, int next_epoch,
                     int64_t step, const std::function<void(const std::string&)>& extra_files) {
  const std::string d = ckpt_dir(o);
  save_model(m, d);
  extra_files(d);
  torch::save(opt, d + "/optimizer.pt");
  nlohmann::json st = {{"task", o.task}, {"next_epoch", next_epoch}, {"step", step}, {"seed", o.seed}};
  write_text_file(d + "/state.json", st.dump(2) + "\n");
}

bool try_resume(std::shared_ptr<TransformerModel>* m, torch::optim::AdamW* opt, const TrainOptions& o,
                Checkpoint* ck, const at::Device& dev) {
  const std::string d = ckpt_dir(o);
  if (!file_exists(d + "/state.json")) return false;
  nlohmann::json st = nlohmann::json::parse(read_text_file(d + "/state.json"));
  if (st.value("task", "") != o.task) fail(d, "checkpoint belongs to task " + st.value("task", "?"));
  auto loaded = load_model(d);
  torch::NoGradGuard ng;
  for (auto& [name, p] : (*m)->hf_parameters()) p.copy_(loaded->param(name).to(dev));
  torch::load(*opt, d + "/optimizer.pt");
  ck->next_epoch = st.value("next_epoch", 0);
  ck->step = st.value("step", int64_t{0});
  std::printf("[train] resumed from %s at epoch %d (step %lld)\n", d.c_str(), ck->next_epoch + 1,
              static_cast<long long>(ck->step));
  return true;
}

at::Tensor cross_entropy(const at::Tensor& logits, const at::Tensor& target, double smoothing) {
  return torch::nn::functional::cross_entropy(
      logits, target, torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(smoothing).ignore_index(-100));
}

// BERT masking: 15% of non-special positions; 80% [MASK], 10% random, 10% kept. Labels -100 elsewhere.
std::pair<at::Tensor, at::Tensor> mask_tokens(const at::Tensor& ids, const at::Tensor& attn, const BertTokenizer& tok,
                                              std::mt19937_64& rng) {
  at::Tensor inp = ids.clone(), labels = at::full_like(ids, -100);
  auto pi = inp.accessor<int64_t, 2>();
  auto pl = labels.accessor<int64_t, 2>();
  auto pa = attn.accessor<int64_t, 2>();
  std::uniform_real_distribution<double> u(0, 1);
  for (int64_t b = 0; b < ids.size(0); ++b)
    for (int64_t t = 0; t < ids.size(1); ++t) {
      int64_t id = pi[b][t];
      if (!pa[b][t] || id == tok.cls_id() || id == tok.sep_id() || id == tok.pad_id()) continue;
      if (u(rng) >= 0.15) continue;
      pl[b][t] = id;
      double r = u(rng);
      if (r < 0.8) pi[b][t] = tok.mask_id();
      else if (r < 0.9) pi[b][t] = 5 + static_cast<int64_t>(rng() % static_cast<uint64_t>(tok.size() - 5));
    }
  return {inp, labels};
}

std::vector<int> shuffled(int n, uint64_t seed) {
  std::vector<int> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  std::mt19937_64 rng(seed);
  for (int i = n - 1; i > 0; --i) std::swap(idx[static_cast<size_t>(i)], idx[rng() % static_cast<uint64_t>(i + 1)]);
  return idx;
}

void write_train_log(const TrainOptions& o, const nlohmann::json& figures) {
  nlohmann::json j = figures;
  j["task"] = o.task;
  j["epochs"] = o.epochs;
  if (!o.init.empty()) j["init"] = o.init;  // the model this run continued from (its own train_log.json says how it was made)
  j["batch"] = o.batch;
  j["lr"] = o.lr;
  j["weight_decay"] = o.weight_decay;
  j["label_smoothing"] = o.label_smoothing;
  j["dropout"] = o.dropout;
  if (o.task == "vit-fmnist") {
    j["augment"] = o.augment ? nlohmann::json{{"shift", o.shift}, {"flip", o.flip}, {"erase", o.erase}} : nlohmann::json(false);
    if (o.distill_epochs > 0)
      j["distill"] = {{"teacher", "cnn"}, {"teacher_epochs", o.distill_epochs}, {"weight", o.distill_weight},
                      {"temperature", o.distill_temp}};
  }
  j["seed"] = o.seed;
  j["device"] = o.device;
  write_text_file(o.out + "/train_log.json", j.dump(2) + "\n");
}

// The epoch loop shared by all tasks. step_fn trains one batch and returns its loss;
// eval_fn prints/returns the end-of-epoch figure.
void run_epochs(std::shared_ptr<TransformerModel>& model, torch::optim::AdamW& opt, const TrainOptions& o,
                const at::Device& dev, int n_train,
                const std::function<double(const std::vector<int>&, std::mt19937_64&)>& step_fn,
                const std::function<double()>& eval_fn, const std::function<void(const std::string&)>& extra_files) {
  const int64_t steps_per_epoch = (n_train + o.batch - 1) / o.batch;
  Schedule sched{o.lr, o.min_lr_frac, static_cast<int64_t>(o.warmup_frac * steps_per_epoch * o.epochs),
                 steps_per_epoch * o.epochs};
  sched.warmup = std::max<int64_t>(1, sched.warmup);
  Checkpoint ck;
  try_resume(&model, &opt, o, &ck, dev);
  for (int epoch = ck.next_epoch; epoch < o.epochs; ++epoch) {
    auto t0 = Clock::now();
    model->train();
    std::mt19937_64 rng(o.seed * 1000003 + static_cast<uint64_t>(epoch));
    std::vector<int> order = shuffled(n_train, o.seed * 7919 + static_cast<uint64_t>(epoch));
    double loss_sum = 0;
    int64_t nb = 0;
    for (int start = 0; start < n_train; start += o.batch) {
      std::vector<int> idx(order.begin() + start, order.begin() + std::min(n_train, start + o.batch));
      set_lr(opt, sched.at(ck.step));
      opt.zero_grad();
      double loss = step_fn(idx, rng);
      if (!std::isfinite(loss)) fail("train", "loss became " + std::to_string(loss) + " at step " + std::to_string(ck.step) + " (lower --lr?)");
      opt.step();
      loss_sum += loss;
      ++nb;
      ++ck.step;
      if (nb % 50 == 0) {
        std::printf("\r[train] epoch %d/%d  batch %lld/%lld  loss %.4f", epoch + 1, o.epochs, static_cast<long long>(nb),
                    static_cast<long long>(steps_per_epoch), loss_sum / nb);
        std::fflush(stdout);
      }
    }
    model->eval();
    double metric = eval_fn();
    std::printf("\r[train] epoch %d/%d  loss %.4f  eval %.2f%%  lr %.2e  %.1fs\n", epoch + 1, o.epochs, loss_sum / nb, metric,
                sched.at(ck.step - 1), since(t0));
    std::fflush(stdout);
    save_checkpoint(*model, opt, o, epoch + 1, ck.step, extra_files);
  }
}

// The encoder shape shared by both architectures, from the command line.
ModelConfig encoder_config(const TrainOptions& o, const std::string& model_type) {
  ModelConfig c;
  c.model_type = model_type;
  c.hidden_size = o.hidden;
  c.num_hidden_layers = o.layers;
  c.num_attention_heads = o.heads;
  c.intermediate_size = o.intermediate;
  c.hidden_act = "gelu";
  c.layer_norm_eps = 1e-12;
  return c;
}

// Top-1 % of `classify` on an image set, in batches of 500.
double image_accuracy(const LabeledData& data, const at::Device& dev, const std::function<at::Tensor(const at::Tensor&)>& classify) {
  torch::NoGradGuard ng;
  int correct = 0;
  for (int s = 0; s < data.size(); s += 500) {
    std::vector<int> idx(static_cast<size_t>(std::min(500, data.size() - s)));
    std::iota(idx.begin(), idx.end(), s);
    at::Tensor pred = classify(data.batch(idx).pixel_values.to(dev)).argmax(-1).to(at::kCPU);
    auto pp = pred.accessor<int64_t, 1>();
    for (size_t i = 0; i < idx.size(); ++i) correct += pp[static_cast<int64_t>(i)] == data.label(idx[i]);
  }
  return 100.0 * correct / data.size();
}

// The CNN teacher for distillation: trained on (X, Y) with ±2 px shifts (no flips) and saved as
// OUT/teacher/ (teacher.pt + teacher.json); a resumed run loads it instead of training again.
CnnTeacher cnn_teacher(const TrainOptions& o, const at::Tensor& X, const at::Tensor& Y, const LabeledData& test_data,
                       ImageAugment aug, const at::Device& dev, double* test_top1) {
  const std::string dir = o.out + "/teacher";
  CnnTeacher teacher(X.size(1), X.size(2), 10);
  if (file_exists(dir + "/teacher.json")) {
    torch::load(teacher, dir + "/teacher.pt");
    teacher->to(dev);
    *test_top1 = nlohmann::json::parse(read_text_file(dir + "/teacher.json")).value("fashion_mnist_test_top1", 0.0);
    std::printf("[train] CNN teacher loaded from %s (test top-1 %.2f%%)\n", dir.c_str(), *test_top1);
    teacher->eval();
    return teacher;
  }
  teacher->to(dev);
  aug.shift = 2;
  aug.flip = false;
  aug.erase = 0;
  torch::manual_seed(o.seed + 17);
  torch::optim::AdamW opt(teacher->parameters(), torch::optim::AdamWOptions(1e-3).weight_decay(0.05));
  const int n = static_cast<int>(X.size(0));
  const int64_t per_epoch = (n + o.batch - 1) / o.batch;
  Schedule sched{1e-3, 0.01, std::max<int64_t>(1, per_epoch / 4), per_epoch * o.distill_epochs};
  int64_t step = 0;
  auto t0 = Clock::now();
  for (int epoch = 0; epoch < o.distill_epochs; ++epoch) {
    teacher->train();
    std::mt19937_64 rng(o.seed * 1000003 + 500 + static_cast<uint64_t>(epoch));
    std::vector<int> order = shuffled(n, o.seed * 7919 + 500 + static_cast<uint64_t>(epoch));
    double loss_sum = 0;
    for (int start = 0; start < n; start += o.batch, ++step) {
      std::vector<int64_t> idx(order.begin() + start, order.begin() + std::min(n, start + o.batch));
      at::Tensor ix = at::tensor(idx).to(dev);
      for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(sched.at(step));
      opt.zero_grad();
      at::Tensor loss = cross_entropy(teacher->forward(augment_images(X.index_select(0, ix), rng, aug)),
                                      Y.index_select(0, ix), 0.1);
      loss.backward();
      opt.step();
      loss_sum += loss.item<double>();
    }
    teacher->eval();
    *test_top1 = image_accuracy(test_data, dev, [&](const at::Tensor& x) { return teacher->forward(x); });
    std::printf("[train] CNN teacher epoch %d/%d  loss %.4f  test top-1 %.2f%%  %.1fs\n", epoch + 1, o.distill_epochs,
                loss_sum / static_cast<double>(per_epoch), *test_top1, since(t0));
    std::fflush(stdout);
  }
  make_dirs(dir);
  torch::save(teacher, dir + "/teacher.pt");
  write_text_file(dir + "/teacher.json",
                  nlohmann::json{{"fashion_mnist_test_top1", *test_top1}, {"epochs", o.distill_epochs}, {"seconds", since(t0)}}.dump(2) + "\n");
  return teacher;
}

void train_vit(const TrainOptions& o, const at::Device& dev) {
  ModelConfig c = encoder_config(o, "vit");
  c.architecture = "ViTForImageClassification";
  c.image_size = 28;
  c.patch_size = o.patch;
  c.num_channels = 1;
  c.hidden_dropout_prob = o.dropout;
  c.attention_probs_dropout_prob = 0.0;
  c.id2label = fashion_mnist_labels();
  c.validate("vit-fmnist");
  ImagePreprocess pp = fmnist_preprocess();
  auto extra = [&](const std::string& d) { pp.save(d + "/preprocessor_config.json"); };

  ImageSet tr = load_fashion_mnist("train"), te = load_fashion_mnist("test");
  if (o.limit > 0) {
    tr.images.resize(std::min<size_t>(tr.images.size(), static_cast<size_t>(o.limit)));
    tr.labels.resize(tr.images.size());
    te.images.resize(std::min<size_t>(te.images.size(), static_cast<size_t>(o.limit)));
    te.labels.resize(te.images.size());
  }
  auto train_data = make_image_data(tr, pp, 1, "fashion-mnist/train");
  auto test_data = make_image_data(te, pp, 1, "fashion-mnist/test");
  // Whole training set on the device once: batches are index_select, not host copies.
  std::vector<int> all(static_cast<size_t>(train_data->size()));
  std::iota(all.begin(), all.end(), 0);
  at::Tensor X = train_data->batch(all).pixel_values.to(dev);
  at::Tensor Y = at::tensor(std::vector<int64_t>(tr.labels.begin(), tr.labels.end())).to(dev);
  const float background = (0.f - kFmnistMean) / kFmnistStd;
  ImageAugment aug;
  aug.shift = o.shift;
  aug.flip = o.flip;
  aug.erase = o.erase;
  aug.background = background;
  aug.white = (1.f - kFmnistMean) / kFmnistStd;

  // --init continues from a trained model (a second cosine cycle): its config (shape, dropout)
  // wins over the options.
  std::shared_ptr<TransformerModel> model;
  if (o.init.empty()) {
    model = create_model(c, ModelHeads{});
    model->init_weights(o.seed);
  } else {
    model = load_model(o.init);
    if (model->config().model_type != "vit") fail("train", o.init + ": --init for vit-fmnist needs a ViT model");
  }
  model->to(dev);
  double teacher_top1 = 0;
  CnnTeacher teacher{nullptr};
  if (o.distill_epochs > 0) teacher = cnn_teacher(o, X, Y, *test_data, aug, dev, &teacher_top1);
  auto opt = make_optimizer(*model, o);
  auto step = [&](const std::vector<int>& idx, std::mt19937_64& rng) {
    at::Tensor ix = at::tensor(std::vector<int64_t>(idx.begin(), idx.end())).to(dev);
    at::Tensor x = X.index_select(0, ix), y = Y.index_select(0, ix);
    if (o.augment) x = augment_images(x, rng, aug);
    ModelInput in;
    in.pixel_values = x;
    at::Tensor logits = model->logits(in);
    at::Tensor loss = cross_entropy(logits, y, o.label_smoothing);
    if (teacher) {
      at::Tensor t;
      {
        torch::NoGradGuard ng;
        t = teacher->forward(x);  // the same augmented images: consistent targets
      }
      loss = distillation_loss(logits, t, loss, o.distill_weight, o.distill_temp);
    }
    loss.backward();
    return loss.item<double>();
  };
  auto eval = [&]() {
    return image_accuracy(*test_data, dev, [&](const at::Tensor& x) {
      ModelInput in;
      in.pixel_values = x;
      return model->logits(in);
    });
  };
  auto t0 = Clock::now();
  run_epochs(model, *opt, o, dev, train_data->size(), step, eval, extra);
  double acc = eval();
  model->to(at::kCPU);
  save_model(*model, o.out);
  extra(o.out);
  nlohmann::json fig = {{"fashion_mnist_test_top1", acc}, {"seconds_this_run", since(t0)}};
  if (teacher) fig["teacher_test_top1"] = teacher_top1;
  write_train_log(o, fig);
  std::printf("[train] vit-fmnist: test top-1 %.2f%%  -> %s\n", acc, o.out.c_str());
}

ModelConfig bert_config(const TrainOptions& o, int vocab) {
  ModelConfig c = encoder_config(o, "bert");
  c.vocab_size = vocab;
  c.max_position_embeddings = o.max_len;
  c.type_vocab_size = 2;
  c.pad_token_id = 0;
  c.hidden_dropout_prob = o.dropout;
  c.attention_probs_dropout_prob = o.dropout;
  c.id2label = austen_labels();
  c.validate("bert");
  return c;
}

std::vector<std::vector<int>> encode_all(const BertTokenizer& tok, const std::vector<std::string>& texts, int max_len) {
  std::vector<std::vector<int>> out;
  for (const auto& t : texts) out.push_back(tok.encode(t, max_len));
  return out;
}

void train_bert(const TrainOptions& o, const at::Device& dev, bool finetune) {
  TextSet tr = load_austen6("train"), dev_set = load_austen6("dev"), te = load_austen6("test");
  if (o.limit > 0) {
    tr.texts.resize(std::min<size_t>(tr.texts.size(), static_cast<size_t>(o.limit)));
    tr.labels.resize(tr.texts.size());
  }
  BertTokenizer tok = [&] {
    if (finetune) return BertTokenizer::load(o.init);
    auto t0 = Clock::now();
    BasicTokenizerOptions bo;
    auto vocab = build_wordpiece_vocab(tr.texts, o.vocab_size, bo);
    std::printf("[train] built a WordPiece vocabulary of %zu pieces from the training split in %.1fs\n", vocab.size(), since(t0));
    return BertTokenizer::from_vocab(vocab, bo);
  }();
  std::shared_ptr<TransformerModel> model;
  if (finetune) {
    auto pre = load_model(o.init);
    ModelConfig c = pre->config();
    c.id2label = austen_labels();
    c.hidden_dropout_prob = o.dropout;
    c.attention_probs_dropout_prob = o.dropout;
    model = create_model(c, ModelHeads{true, true});
    model->init_weights(o.seed);
    torch::NoGradGuard ng;
    for (auto& [name, p] : model->hf_parameters())
      for (auto& [pn, pp] : pre->hf_parameters())
        if (pn == name) p.copy_(pp);
  } else {
    model = create_model(bert_config(o, tok.size()), ModelHeads{false, true});
    model->init_weights(o.seed);
  }
  model->to(dev);
  auto extra = [&](const std::string& d) { tok.save(d, o.max_len); };
  auto train_ids = encode_all(tok, tr.texts, o.max_len);
  auto opt = make_optimizer(*model, o);
  auto step = [&](const std::vector<int>& idx, std::mt19937_64& rng) {
    std::vector<std::vector<int>> seqs;
    std::vector<int64_t> labels;
    for (int i : idx) {
      seqs.push_back(train_ids[static_cast<size_t>(i)]);
      labels.push_back(tr.labels[static_cast<size_t>(i)]);
    }
    ModelInput in = pad_token_batch(seqs, tok.pad_id());
    auto [masked, mlm_labels] = mask_tokens(in.input_ids, in.attention_mask, tok, rng);
    ModelInput min = in;
    min.input_ids = masked;
    at::Tensor loss = at::zeros({}, at::TensorOptions(dev));
    if (!finetune || o.mlm_weight > 0) {
      at::Tensor flat = mlm_labels.view({-1});
      at::Tensor rows = flat.ne(-100).nonzero().view({-1});
      at::Tensor ml = model->mlm_logits(min.to(dev), rows);
      at::Tensor l = cross_entropy(ml, flat.index_select(0, rows).to(dev), 0.0);
      loss = loss + (finetune ? o.mlm_weight : 1.0) * l;
    }
    if (finetune) {
      at::Tensor y = at::tensor(labels).to(dev);
      loss = loss + cross_entropy(model->logits(in.to(dev)), y, o.label_smoothing);
    }
    loss.backward();
    return loss.item<double>();
  };
  auto dev_data = make_text_data(dev_set, tok, o.max_len, "austen6/dev");
  auto eval = [&]() -> double {
    model->to(at::kCPU);
    double r;
    if (finetune) {
      r = evaluate(*model, *dev_data, 128).accuracy();
    } else {
      r = mlm_accuracy(*model, tok, dev_set.texts, o.max_len, 1234, 128).accuracy();
    }
    model->to(dev);
    return r;
  };
  auto t0 = Clock::now();
  run_epochs(model, *opt, o, dev, static_cast<int>(train_ids.size()), step, eval, extra);
  model->to(at::kCPU);
  model->eval();
  save_model(*model, o.out);
  extra(o.out);
  MlmResult mlm = mlm_accuracy(*model, tok, te.texts, o.max_len, 1234, 128);
  nlohmann::json fig = {{"mlm_test_accuracy", mlm.accuracy()}, {"seconds_this_run", since(t0)}, {"vocab_size", tok.size()}};
  if (finetune) {
    auto test_data = make_text_data(te, tok, o.max_len, "austen6/test");
    fig["austen6_test_accuracy"] = evaluate(*model, *test_data, 128).accuracy();
    fig["austen6_dev_accuracy"] = evaluate(*model, *dev_data, 128).accuracy();
  }
  write_train_log(o, fig);
  std::printf("[train] %s: %s -> %s\n", o.task.c_str(), fig.dump().c_str(), o.out.c_str());
}

}  // namespace

void train(const TrainOptions& o) {
  if (o.out.empty()) fail("train", "--out is required");
  if (o.epochs < 1 || o.batch < 1 || !(o.lr > 0)) fail("train", "--epochs, --batch and --lr must be positive");
  at::Device dev(o.device);
  if (dev.is_cuda() && !torch::cuda::is_available()) fail("train", "--device cuda but this libtorch has no usable CUDA device");
  // Training resumes in its own folder (each file written whole, via a temporary + rename), so
  // the folder is not swapped like quantize's; but it may not be --init itself, nor a folder that
  // no training wrote (a source tree, a quantized artifact), unless --force.
  check_output_folder(o.out, {o.init}, o.force, [](const std::string& d) {
    return file_exists(d + "/train_log.json") || file_exists(d + "/checkpoint") || file_exists(d + "/pretrain_log.json");
  });
  set_threads(o.threads);
  make_dirs(o.out);
  std::printf("[train] task %s on %s, %d threads, seed %llu\n", o.task.c_str(), dev.str().c_str(), at::get_num_threads(),
              static_cast<unsigned long long>(o.seed));
  if (o.task == "vit-fmnist") {
    train_vit(o, dev);
  } else if (o.task == "bert-mlm") {
    train_bert(o, dev, false);
  } else if (o.task == "bert-austen6") {
    if (o.init.empty()) fail("train", "bert-austen6 needs --init DIR (an MLM-pretrained model from task bert-mlm)");
    train_bert(o, dev, true);
  } else {
    fail("train", "unknown task '" + o.task + "' (vit-fmnist | bert-mlm | bert-austen6)");
  }
}

at::Tensor augment_images(const at::Tensor& x, std::mt19937_64& rng, const ImageAugment& a) {
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), P = a.shift;
  at::Tensor padded = at::constant_pad_nd(x, {P, P, P, P}, a.background);
  std::uniform_real_distribution<double> u01(0.0, 1.0);
  std::vector<at::Tensor> out;
  out.reserve(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    int64_t dy = static_cast<int64_t>(rng() % static_cast<uint64_t>(2 * P + 1));
    int64_t dx = static_cast<int64_t>(rng() % static_cast<uint64_t>(2 * P + 1));
    at::Tensor s = padded[b].narrow(1, dy, H).narrow(2, dx, W);
    if ((rng() & 1) && a.flip) s = s.flip({2});  // the draw either way: the shifts stay as they were
    if (a.erase > 0 && u01(rng) < a.erase) {
      for (int attempt = 0; attempt < 10; ++attempt) {
        const double area = (0.02 + 0.38 * u01(rng)) * static_cast<double>(H * W);
        const double aspect = std::exp(std::log(0.3) + (std::log(1 / 0.3) - std::log(0.3)) * u01(rng));
        const auto h = static_cast<int64_t>(std::lround(std::sqrt(area * aspect)));
        const auto w = static_cast<int64_t>(std::lround(std::sqrt(area / aspect)));
        if (h < 1 || w < 1 || h >= H || w >= W) continue;
        const auto y0 = static_cast<int64_t>(rng() % static_cast<uint64_t>(H - h + 1));
        const auto x0 = static_cast<int64_t>(rng() % static_cast<uint64_t>(W - w + 1));
        std::vector<float> noise(static_cast<size_t>(C * h * w));
        for (float& v : noise) v = a.background + static_cast<float>(u01(rng)) * (a.white - a.background);
        s = s.clone();
        s.narrow(1, y0, h).narrow(2, x0, w).copy_(at::tensor(noise).reshape({C, h, w}).to(s.device()));
        break;
      }
    }
    out.push_back(s);
  }
  return at::stack(out);
}

}  // namespace qtx
