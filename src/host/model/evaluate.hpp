#pragma once
#include "cnn/model.hpp"
#include "model/batches.hpp"
#include "model/runner.hpp"

namespace cnn {

// Loss and accuracy of the model on (x, t) in batches, with test-time augmentation; also
// fit's validation.
Evaluation evaluate_batches(Runner<float>& runner, Sequential::State& s, const Tensor& x, const Targets& t,
                            const EvaluateOptions& o);

}  // namespace cnn
