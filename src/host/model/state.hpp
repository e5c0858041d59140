#pragma once
// The runtime behind Sequential: compiled shapes, the flat parameter/gradient/optimizer
// buffers, the activation arena planned for the largest batch, and the loss plan.
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/buffer.hpp"
#include "cnn/model.hpp"
#include "kernels/ops.hpp"
#include "model/arena.hpp"

namespace cnn {
namespace distributed {
class Communicator;
}

enum class LossKind { CategoricalCE, SparseCategoricalCE, MSE, BinaryCE };
LossKind parse_loss(const std::string& name);

// State::dense_chain for built layers (their emit_logits already set): runs of consecutive
// Dense layers with scale 1 of which ops::dense_chain_takes each, cut at kDenseChainMaxLayers.
std::vector<int> plan_dense_chains(const std::vector<std::shared_ptr<Layer>>& layers);
std::string canonical_loss_name(LossKind kind);

struct Sequential::State {
  bool compiled = false;
  CompileOptions opt;
  OptimizerKind optimizer = OptimizerKind::SGD;  // opt.optimizer, parsed
  Precision precision = Precision::FP32;         // opt.precision, parsed
  bool fresh_weights = false;  // weights as compile made them (Sequential::weights_fresh)

  // Loss plan: with `fused`, the last layer emits logits and the loss applies softmax or
  // sigmoid itself (stable, gradient p - y); predict() applies it to the logits.
  LossKind loss = LossKind::CategoricalCE;
  bool fused = false;
  Activation output_activation = Activation::Linear;  // applied by predict() when fused

  Shape input_shape;
  int64_t input_size = 0;                 // per sample
  std::vector<int64_t> out_size;          // per sample, per layer
  std::vector<int64_t> param_offset;      // per layer, into the flat buffers
  int64_t param_total = 0;
  // Runs of trainable parameters that share a learning-rate scale: one optimizer launch each.
  struct Segment {
    int64_t begin = 0, end = 0;
    float lr_scale = 1.0f;
    float decay_scale = 1.0f;  // multiplies weight_decay (1 / bias scale: a bias's decay not lr-scaled)
    int until_epoch = -1;      // >= 0: updated in fit epochs < until_epoch only (Layer::trainable_epochs)
  };
  std::vector<Segment> trainable_segments;
  std::vector<bool> need_dx;              // per layer: some trainable layer lies below it
  std::vector<bool> output_is_input;      // per layer: Layer::output_is_input, not the first layer
  // Per layer: the activation of the layer below whose gradient this layer's backward takes
  // in a training step (Layer::takes_activation_below, activation_for_layer_above); Linear: none.
  std::vector<ActivationSpec> activation_below;
  // Per layer: how many Dense layers from here on the GPU's fp32 step runs forward as one
  // kernel (ops::dense_chain_forward; 2 to kDenseChainMaxLayers), else 0 (plan_dense_chains).
  std::vector<int> dense_chain;
  // Per layer: a Conv2D with a pooling layer right after it, which the GPU step may run in the
  // conv's kernel (Conv2D::forward_with_pooling).
  std::vector<bool> conv_then_pool;
  // The last layer is a Dense layer with a bias and scale 1 whose logits the fused softmax
  // cross-entropy takes: that loss may write its bias gradient (Runner::loss_with_metrics).
  bool last_bias_from_loss = false;

  Device device = Device::CPU;
  std::shared_ptr<cuda::Context> cuda;  // owned; set on CUDA
  Tensor params, grads, opt_m, opt_v;   // [param_total] each (opt_m/opt_v per optimizer)
  int64_t step = 0;                     // optimizer steps taken (Adam's bias correction)
  int epoch = 0;                        // the epoch fit is in (Runner::begin_epoch); segments' until_epoch
  float lr_factor = 1.0f;               // the LR schedule's multiplier for the current step
  // CUDA: the current step's optimizer scalars per trainable segment, uploaded before the
  // step so that a replayed graph reads them (Runner::stage_optimizer_scalars).
  Buffer<ops::OptimizerScalars> optimizer_scalars;
  double step_progress = 0;             // fit: the fraction of its steps done, the current one included

  // The activations of the training step, planned for the largest batch so far (model/arena.hpp).
  Arena<float> arena;

  // Profiling (set_profiling): per layer, then loss and optimizer.
  bool profile = false;
  std::vector<Sequential::LayerTiming> timings;

  // CUDA graphs of the training step (model/step.cpp): batch sizes run once already, and
  // whether graphs are allowed.
  std::set<int64_t> graph_warm;
  bool graphs_enabled = true;

  uint64_t step_seed = 0;  // random numbers of the current step (dropout, augmentation)

  // Data-parallel fit (model/distributed.hpp): the step all-reduces the gradients through
  // `comm` before the update, this rank's contribution weighted; null otherwise.
  const distributed::Communicator* comm = nullptr;
  float gradient_weight = 1.0f;
  // FitOptions::sync_batchnorm: training steps' BatchNormalization statistics over all ranks.
  bool sync_batchnorm = false;
  int64_t allreduce_bucket_bytes = 0;  // FitOptions::allreduce_bucket_bytes (0: one all-reduce)

  Exec exec(bool training) const { return Exec{device, cuda.get(), training, step_seed, precision}; }
  int64_t output_size() const { return out_size.back(); }
  ops::TargetKind target_kind() const;
};

}  // namespace cnn
