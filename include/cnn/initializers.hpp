#pragma once
// Data-dependent initialisers, and the small eigen solver they use.
//
// Patch whitening (KellerJordan/cifar10-airbench's first layer): a Conv2D whose filters
// decorrelate the k_h x k_w x C patches of the training images and scale them to unit
// variance, stacked with their negations (so a following ReLU/GELU keeps both signs):
//
//   cnn::Sequential model = cnn::Sequential::from_json_file("models/airbench94.json");
//   cnn::init_patch_whitening(model, 0, train.x.slice(0, 5000));
//
// In JSON a Conv2D asks for it with "kernel_initializer": "patch_whitening"; fit then applies
// it (apply_data_dependent_initializers) with the first FitOptions::patch_whitening.images
// training images before training, while the weights are fresh from compile (compile alone
// initialises such a layer like glorot_uniform, so the model is usable without data).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "cnn/model.hpp"
#include "cnn/tensor.hpp"

namespace cnn {

// Sets Conv2D layer `layer_index`'s weights to the whitening filters of its input's patches.
//
// Patches: every k_h x k_w window (stride 1, no padding, whatever the layer's own strides and
// padding) of every image, flattened in the weight's (channel, row, column) order to
// D = C k_h k_w values. With their mean m and covariance S = E[(p - m)(p - m)^T] (in double),
// S = V diag(lambda) V^T (lambda descending, symmetric_eigen below), the weights are
//   filter f      = v_f / sqrt(lambda_f + eps)     f = 0 .. D-1
//   filter D + f  = -(filter f)
// so the layer needs filters == 2 D (2x2 patches of RGB images: 24). The first D outputs of a
// linear layer then have covariance diag(lambda / (lambda + eps)) ~ I over those patches.
// The bias, when the layer has one, is set to -W m: the outputs are zero-mean, as airbench's
// are on its standardised inputs (on zero-mean inputs the bias is 0 and this is airbench's
// initialiser exactly); without a bias the outputs keep the mean W m.
//
// eps is in the inputs' units squared. airbench's 5e-4 is meant for inputs standardised to
// unit variance; on [0, 1] pixels (variance about 0.06; the smallest 2x2x3 eigenvalue of
// CIFAR-10 is about 4e-5) it would damp the weakest directions far more. With relative_eps
// the added term is eps * trace(S) / D (eps times the mean patch variance, about 1 on
// standardised inputs), which makes the result independent of the inputs' scale: this is
// how `cnn train` applies airbench's 5e-4 to unstandardised images.
//
// `images`: [N, model input shape] (on any device). For layer 0 the patches come from the
// images themselves; for a later layer from the model's output below it, computed in
// inference mode. The weights are written with set_weights, so the model may be on the GPU.
// Returns the covariance's eigenvalues lambda (descending), for diagnostics.
// Throws cnn::Error (nothing is changed) when the model is not compiled, the index is out of
// range, the layer is not a Conv2D, its filter count is not 2 D (the message gives 2 D), the
// images do not match the model's input shape, there are fewer than D + 1 patches, eps is
// negative or not finite, the patches hold a non-finite value, or eps is 0 and the covariance
// is singular (or, with relative_eps, the covariance is 0).
std::vector<double> init_patch_whitening(Sequential& model, size_t layer_index, const Tensor& images,
                                         double eps = 5e-4, bool relative_eps = false);

// What one data-dependent initialisation did (for the log line of fit and `cnn train`).
struct InitializationReport {
  size_t layer = 0;
  int64_t images = 0;
  double eps = 0;                   // relative to the mean patch variance
  double seconds = 0;
  std::vector<double> eigenvalues;  // descending
  // "Whitened layer 0 (Conv2D) with the patches of 5000 training images in 0.31 s
  // (eigenvalues 0.214 .. 3.91e-05, eps 5e-4 x the mean)"
  std::string describe() const;
};

// fit's first step (also callable before fit, e.g. to log it first): when model.weights_fresh(),
// whitens every Conv2D with kernel_initializer "patch_whitening" from the first
// options.patch_whitening.images images of x that fit trains on (those before the
// validation split), eps relative (init_patch_whitening). Either way the weights count as no
// longer fresh afterwards, so a later fit (or a second call) changes nothing. Returns one
// report per whitened layer. Throws cnn::Error for images < 1 or eps negative or not finite.
std::vector<InitializationReport> apply_data_dependent_initializers(Sequential& model, const Tensor& x,
                                                                    const FitOptions& options);

// Eigen-decomposition of a real symmetric n x n matrix by cyclic Jacobi rotations (in
// double): a = V diag(values) V^T with V orthogonal. `a` is row-major; only its upper
// triangle is read (the lower is assumed to mirror it). values are sorted descending;
// `vectors` is row-major n x n and its column k (vectors[i * n + k]) is the unit eigenvector
// of values[k]. Meant for small matrices (n up to a few hundred: O(n^3) per sweep, usually
// under 10 sweeps). Throws cnn::Error on a size mismatch or a non-finite entry.
struct SymmetricEigen {
  std::vector<double> values;
  std::vector<double> vectors;
};
SymmetricEigen symmetric_eigen(const std::vector<double>& a, int n);

}  // namespace cnn
