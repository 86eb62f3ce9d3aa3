// `qtx train`: trains the reference models from scratch (AdamW, linear warm-up + cosine decay,
// seeded), checkpointing every epoch and resuming from the last checkpoint.
#pragma once
#include <cstdint>
#include <string>

namespace qtx {

struct TrainOptions {
  std::string task;         // "vit-fmnist" | "bert-mlm" | "bert-austen6"
  std::string out;          // output model folder (checkpoint/ inside it while training)
  bool force = false;       // --out may be --init itself or a folder that is not a training output
  std::string init;         // bert-austen6: the MLM-pretrained folder; vit-fmnist: a trained ViT to continue from
  std::string device = "cpu";
  int epochs = 10;
  int batch = 128;
  double lr = 1e-3;
  double min_lr_frac = 0.01;   // cosine decays to lr * min_lr_frac
  double weight_decay = 0.05;
  double warmup_frac = 0.05;   // of all steps
  double label_smoothing = 0.0;
  double dropout = 0.0;
  double mlm_weight = 0.5;     // bert-austen6: weight of the auxiliary MLM loss that keeps the MLM head usable
  uint64_t seed = 0;
  int threads = 0;
  int limit = 0;               // > 0: train on the first N examples only (smoke tests)
  bool augment = true;         // vit-fmnist: random shifts (±shift px) and horizontal flips
  int shift = 2;
  bool flip = true;            // vit-fmnist: horizontal flips as part of the augmentation
  double erase = 0;            // vit-fmnist: random-erasing probability (0: off)
  int distill_epochs = 0;      // vit-fmnist: > 0 trains a CNN teacher this long first, then distils from it
  double distill_weight = 0.7; // weight of the soft (teacher) loss; 1 − it weighs the label loss
  double distill_temp = 2.0;   // softmax temperature of the soft targets
  // Architecture for models trained from scratch.
  int hidden = 192, layers = 12, heads = 3, intermediate = 768, patch = 4;
  int vocab_size = 8000, max_len = 128;
};

void train(const TrainOptions& opt);

}  // namespace qtx
