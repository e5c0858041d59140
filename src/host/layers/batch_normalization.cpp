// BatchNormalization over the channel axis: batch statistics in training (updating the
// running ones), running statistics in inference. Parameters [C] each, in this order:
// weight (gamma), bias (beta), running_mean, running_var.
#include <algorithm>
#include <climits>
#include <cmath>

#include <nlohmann/json.hpp>

#include "cnn/layers.hpp"
#include "kernels/device_memory.hpp"
#include "layers/layer_impl.hpp"

namespace cnn {

BatchNormalization::BatchNormalization(BatchNormOptions options) : opt_(options) {
  CNN_CHECK(std::isfinite(opt_.momentum) && opt_.momentum >= 0 && opt_.momentum <= 1,
            "BatchNormalization: momentum must be in [0, 1] (PyTorch's convention, the new batch's weight), got ",
            opt_.momentum);
  CNN_CHECK(std::isfinite(opt_.epsilon) && opt_.epsilon > 0, "BatchNormalization: epsilon must be > 0, got ",
            opt_.epsilon);
}

Shape BatchNormalization::build(const Shape& in) {
  CNN_CHECK(!in.empty(), "BatchNormalization: empty input shape");
  CNN_CHECK(in[0] <= 65535, "BatchNormalization: at most 65535 channels, got ", in[0]);
  channels_ = int(in[0]);
  const int64_t spatial = shape_numel(in) / std::max<int64_t>(in[0], 1);
  CNN_CHECK(spatial <= INT32_MAX, "BatchNormalization: ", shape_str(in), " has too many values per channel");
  spatial_ = int(spatial);
  input_shape_ = output_shape_ = in;
  return output_shape_;
}

std::vector<ParamSpec> BatchNormalization::param_specs() const {
  const Shape s{channels_};
  return {{"weight", s, Initializer::Ones, 1, 1, opt_.scale},
          {"bias", s, Initializer::Zeros, 1, 1, opt_.center},
          {"running_mean", s, Initializer::Zeros, 1, 1, false},
          {"running_var", s, Initializer::Ones, 1, 1, false}};
}

nlohmann::json BatchNormalization::config() const {
  auto c = common_config();
  c["momentum"] = opt_.momentum;
  c["epsilon"] = opt_.epsilon;
  c["scale"] = opt_.scale;
  c["center"] = opt_.center;
  return c;
}

template <class T>
void BatchNormalization::forward_t(const Exec& e, const LayerBuffers<T>& b) {
  const int C = channels_;
  T* gamma = b.params;
  T* beta = b.params + C;
  T* running_mean = b.params + 2 * C;
  T* running_var = b.params + 3 * C;
  if (e.training && trainable) {
    T* saved = saved_.get<T>(2 * int64_t(C), e.device);
    const ops::BatchNormForwardTrainingArgs<T> args{
        .x = b.x, .gamma = gamma, .beta = beta, .eps = T(opt_.epsilon), .momentum = T(opt_.momentum),
        .running_mean = running_mean, .running_var = running_var, .save_mean = saved, .save_invstd = saved + C,
        .y = b.y, .across_ranks = e.across_ranks};
    run::batchnorm_forward_training<T>(e, b.n, C, spatial_, args);
  } else {
    const ops::BatchNormForwardInferenceArgs<T> args{.x = b.x, .gamma = gamma, .beta = beta,
                                                     .running_mean = running_mean, .running_var = running_var,
                                                     .eps = T(opt_.epsilon), .y = b.y};
    run::batchnorm_forward_inference<T>(e, b.n, C, spatial_, args);
  }
}

template <class T>
void BatchNormalization::backward_t(const Exec& e, const LayerBuffers<T>& b) {
  const int C = channels_;
  const T* gamma = b.params;
  T* dgamma = trainable && b.grads ? b.grads : nullptr;
  T* dbeta = dgamma ? b.grads + C : nullptr;
  if (e.training && trainable) {
    // The batch statistics saved by this step's forward pass.
    T* saved = saved_.get<T>(2 * int64_t(C), e.device);
    const ops::BatchNormBackwardTrainingArgs<T> args{.x = b.x, .dy = b.dy, .gamma = gamma, .save_mean = saved,
                                                     .save_invstd = saved + C, .dx = b.dx, .dgamma = dgamma,
                                                     .dbeta = dbeta, .across_ranks = e.across_ranks};
    run::batchnorm_backward_training<T>(e, b.n, C, spatial_, args);
  } else {
    const ops::BatchNormBackwardInferenceArgs<T> args{.x = b.x, .dy = b.dy, .gamma = gamma,
                                                      .running_mean = b.params + 2 * C,
                                                      .running_var = b.params + 3 * C, .eps = T(opt_.epsilon),
                                                      .dx = b.dx, .dgamma = dgamma, .dbeta = dbeta};
    run::batchnorm_backward_inference<T>(e, b.n, C, spatial_, args);
  }
  // The gradient slots of the running statistics are never written: they keep the zeros their
  // buffers are allocated with (a cudaMemset here would also break CUDA graph capture).
}

template class LayerCompute<BatchNormalization>;

}  // namespace cnn
