#include "train/distill.h"

#include <ATen/ATen.h>
#include <torch/nn/functional/pooling.h>

namespace qtx {

namespace F = torch::nn::functional;

CnnTeacherImpl::CnnTeacherImpl(int64_t channels, int64_t image_size, int64_t classes) {
  auto conv = [](int64_t in, int64_t out) { return torch::nn::Conv2dOptions(in, out, 3).padding(1).bias(false); };
  c1 = register_module("c1", torch::nn::Conv2d(conv(channels, 32)));
  c2 = register_module("c2", torch::nn::Conv2d(conv(32, 32)));
  c3 = register_module("c3", torch::nn::Conv2d(conv(32, 64)));
  c4 = register_module("c4", torch::nn::Conv2d(conv(64, 64)));
  b1 = register_module("b1", torch::nn::BatchNorm2d(32));
  b2 = register_module("b2", torch::nn::BatchNorm2d(32));
  b3 = register_module("b3", torch::nn::BatchNorm2d(64));
  b4 = register_module("b4", torch::nn::BatchNorm2d(64));
  const int64_t side = image_size / 4;
  fc1 = register_module("fc1", torch::nn::Linear(64 * side * side, 256));
  fc2 = register_module("fc2", torch::nn::Linear(256, classes));
  drop = register_module("drop", torch::nn::Dropout(0.3));
}

at::Tensor CnnTeacherImpl::forward(const at::Tensor& x) {
  at::Tensor h = at::relu(b1(c1(x)));
  h = F::max_pool2d(at::relu(b2(c2(h))), F::MaxPool2dFuncOptions(2));
  h = at::relu(b3(c3(h)));
  h = F::max_pool2d(at::relu(b4(c4(h))), F::MaxPool2dFuncOptions(2));
  h = drop(at::relu(fc1(drop(h.flatten(1)))));
  return fc2(h);
}

at::Tensor distillation_loss(const at::Tensor& student_logits, const at::Tensor& teacher_logits,
                             const at::Tensor& hard_loss, double weight, double temperature) {
  const at::Tensor log_p_student = at::log_softmax(student_logits / temperature, -1);
  const at::Tensor log_p_teacher = at::log_softmax(teacher_logits.detach() / temperature, -1);
  const at::Tensor kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1).mean();
  return (1 - weight) * hard_loss + weight * temperature * temperature * kl;
}

}  // namespace qtx
