// Knowledge distillation for vit-fmnist: a small CNN teacher, trained first in the same run, whose
// temperature-softened outputs the ViT student also matches (Hinton et al. 2015). DeiT (Touvron et
// al. 2021) distils its ViTs from a CNN for the reason that matters here: on little data a ViT
// overfits, while a CNN's locality prior generalises, and its soft targets pass that on.
// Training-only: the shipped model is the student, an ordinary ViT. Kept apart from train.h,
// which stays free of torch headers.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>

namespace qtx {

// Four 3×3 conv + BatchNorm + ReLU blocks (32, 32, 64, 64 channels; 2×2 max-pool after the
// second and the fourth), then 256 hidden units (dropout 0.3) and the classes. ~19 M
// multiply-adds per 28×28 image, a fifth of the patch-7 ViT's forward, so teaching is cheap.
struct CnnTeacherImpl : torch::nn::Module {
  CnnTeacherImpl(int64_t channels, int64_t image_size, int64_t classes);
  at::Tensor forward(const at::Tensor& x);  // [B, C, H, W] normalised pixels -> [B, classes] logits

  torch::nn::Conv2d c1{nullptr}, c2{nullptr}, c3{nullptr}, c4{nullptr};
  torch::nn::BatchNorm2d b1{nullptr}, b2{nullptr}, b3{nullptr}, b4{nullptr};
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  torch::nn::Dropout drop{nullptr};
};
TORCH_MODULE(CnnTeacher);

// (1 − w) · hard_loss + w · T² · KL(softmax(teacher / T) ‖ softmax(student / T)), batch mean.
// T² keeps the soft term's gradient on the scale of the hard one's as T changes (Hinton et al.).
at::Tensor distillation_loss(const at::Tensor& student_logits, const at::Tensor& teacher_logits,
                             const at::Tensor& hard_loss, double weight, double temperature);

}  // namespace qtx
