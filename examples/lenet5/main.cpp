// The seed project's LeNet-5 listing (README.md), built against the installed library.
//
//   lenet5                          trains on a small synthetic set it makes (seconds), and
//                                   exits 1 unless the model learns it
//   lenet5 path/to/cifar-10-batches-bin
//                                   the seed's demo: 5,000 grayscale CIFAR-10 images
#include <cnn/cnn.hpp>

#include <cstdio>
#include <exception>

using namespace cnn;

namespace {

// Class k (of 4) puts a bright 16x16 block in quadrant k of an otherwise noisy 32x32 image.
Dataset make_quadrant_images(int n, uint64_t seed) {
  Rng rng(seed);
  Dataset d{Tensor({n, 1, 32, 32}), Tensor({n}), {"top left", "top right", "bottom left", "bottom right"}};
  for (int i = 0; i < n; ++i) {
    const int label = int(rng.below(4));
    d.y.at({i}) = float(label);
    const int top = (label / 2) * 16, left = (label % 2) * 16;
    for (int r = 0; r < 32; ++r)
      for (int q = 0; q < 32; ++q) {
        const bool inside = r >= top && r < top + 16 && q >= left && q < left + 16;
        d.x.at({i, 0, r, q}) = float((inside ? 0.6 : 0.0) + 0.4 * rng.uniform());
      }
  }
  return d;
}

}  // namespace

int main(int argc, char** argv) try {
  const bool synthetic = argc < 2;
  TrainTest data;
  if (synthetic) {
    data = {make_quadrant_images(512, 1), make_quadrant_images(256, 2)};
  } else {
    data = load_cifar10(argv[1], {.grayscale = true, .train_limit = 5000, .test_limit = 1000});
  }

  Sequential model({
      Conv2D(6, 5, 1, "valid", "relu"),
      AveragePooling2D(2, 2),
      Conv2D(16, 5, 1, "valid", "relu"),
      AveragePooling2D(2, 2),
      Flatten(),
      Dense(120, "relu"),
      Dense(84, "relu"),
      Dense(10, "softmax"),
  });
  model.compile("sgd", "cce", 0.01, {1, 32, 32});
  model.summary();

  const int epochs = synthetic ? 8 : 30;
  model.fit(data.train.x, to_categorical(data.train.y, 10), {.epochs = epochs, .verbose = 2});
  const Evaluation test = model.evaluate(data.test.x, to_categorical(data.test.y, 10));
  std::printf("test loss %.4f, accuracy %.1f%% on %lld images\n", test.loss, 100 * test.accuracy,
              static_cast<long long>(data.test.size()));
  if (synthetic && test.accuracy < 0.9) {
    std::fprintf(stderr, "lenet5: the model did not learn the synthetic images (accuracy below 90%%)\n");
    return 1;
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "lenet5: %s\n", e.what());
  return 1;
}
