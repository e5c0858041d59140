// The program tests/mpi/test_mpi.cpp starts under mpirun (or alone, as the single-process
// reference): a small CNN trained data-parallel (FitOptions::distributed) on a synthetic
// image set through the C++ API. Every rank writes its final parameters to
// <out>/weights.<rank> (raw floats) and rank 0 its epoch losses to <out>/loss.txt.
//   cnn_mpi_helper <out> [key=value ...]
// keys: rows, batch, epochs (may be fractional), drop_last (1: whole global batches only), seed,
//       checkpoint, resume, validation (split, e.g. 0.2),
//       batch_norm (1: a BatchNormalization layer after the convolution), sync_batchnorm (1: its
//       statistics over all ranks), bucket_bytes (FitOptions::allreduce_bucket_bytes),
//       batch_rank1 (rank 1's batch size, for the agreement test),
//       fault = throw | kill | nan, fault_rank, fault_step (global optimizer step; nan: the
//       rank's data holds a NaN image instead)
#include <signal.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>

#include "cnn/cnn.hpp"
#include "test_data_util.hpp"

namespace {

using namespace cnn;

// Throws, or SIGKILLs this process, after the given optimizer step on the given rank.
class Fault : public Callback {
 public:
  Fault(std::string kind, int64_t step) : kind_(std::move(kind)), step_(step) {}
  void on_step_end(Sequential&, int64_t global_step) override {
    if (global_step != step_) return;
    // When the fault happens (wall clock, milliseconds), for the test to time the teardown.
    const auto now = std::chrono::system_clock::now().time_since_epoch();
    std::fprintf(stderr, "fault at unix-ms %lld\n", (long long)std::chrono::duration_cast<std::chrono::milliseconds>(now).count());
    std::fflush(stderr);
    if (kind_ == "kill") ::raise(SIGKILL);
    throw Error("test fault: thrown after optimizer step " + std::to_string(global_step));
  }

 private:
  std::string kind_;
  int64_t step_;
};

Sequential small_cnn(uint64_t seed, bool batch_norm) {
  Sequential m = batch_norm ? Sequential({Conv2D(4, 3, 1, "valid", "linear"), BatchNormalization(), MaxPooling2D(2, 2),
                                          Flatten(), Dense(16, "relu"), Dense(4, "softmax")})
                            : Sequential({Conv2D(4, 3, 1, "valid", "relu"), MaxPooling2D(2, 2), Flatten(),
                                          Dense(16, "relu"), Dense(4, "softmax")});
  CompileOptions co;
  co.optimizer = "sgd";
  co.loss = "scce";
  co.learning_rate = 0.05f;
  co.momentum = 0.9f;
  co.input_shape = {1, 10, 10};
  co.seed = seed;
  m.compile(co);
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: cnn_mpi_helper <out> [key=value ...]\n");
    return 2;
  }
  const std::string out = argv[1];
  std::map<std::string, std::string> kv = {{"rows", "200"}, {"batch", "8"},   {"epochs", "2"},    {"seed", "7"},
                                           {"fault", ""},   {"fault_rank", "1"}, {"fault_step", "-1"},
                                           {"checkpoint", ""}, {"resume", ""}, {"validation", "0"}, {"batch_rank1", "0"},
                                           {"batch_norm", "0"}, {"sync_batchnorm", "0"}, {"bucket_bytes", "-1"},
                                           {"drop_last", "0"}};
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    const size_t eq = a.find('=');
    if (eq == std::string::npos || !kv.count(a.substr(0, eq))) {
      std::fprintf(stderr, "cnn_mpi_helper: unknown argument '%s'\n", a.c_str());
      return 2;
    }
    kv[a.substr(0, eq)] = a.substr(eq + 1);
  }
  try {
    distributed::init();
    const int rank = distributed::rank();
    // Each rank initialises with its own seed: rank 0's weights must win.
    Sequential model = small_cnn(std::stoull(kv["seed"]) + uint64_t(rank), kv["batch_norm"] == "1");
    test::SmallData data = test::make_quadrant_data(std::stoi(kv["rows"]), 1, 10, 10, 11);
    FitOptions f;
    f.epochs = std::stod(kv["epochs"]);
    f.drop_last = kv["drop_last"] == "1";
    f.batch_size = std::stoi(kv["batch"]);
    if (rank == 1 && std::stoi(kv["batch_rank1"]) > 0) f.batch_size = std::stoi(kv["batch_rank1"]);
    f.seed = 5;
    f.verbose = 0;
    f.validation_split = std::stof(kv["validation"]);
    f.checkpoint_path = kv["checkpoint"];
    f.resume_from = kv["resume"];
    f.distributed = true;
    f.sync_batchnorm = kv["sync_batchnorm"] == "1";
    if (std::stoll(kv["bucket_bytes"]) >= 0) f.allreduce_bucket_bytes = std::stoll(kv["bucket_bytes"]);
    const bool faulty = !kv["fault"].empty() && rank == std::stoi(kv["fault_rank"]);
    if (faulty && kv["fault"] == "nan")  // every tenth image of this rank's copy of the data
      for (int64_t i = 0; i < data.x.dim(0); i += 10) data.x.data()[i * 100 + 17] = std::nanf("");
    else if (faulty) f.callbacks.push_back(std::make_shared<Fault>(kv["fault"], std::stoll(kv["fault_step"])));
    const History h = model.fit(data.x, data.y, f);

    const Tensor p = model.parameters().to(Device::CPU);
    std::ofstream w(out + "/weights." + std::to_string(rank), std::ios::binary);
    w.write(reinterpret_cast<const char*>(p.data()), std::streamsize(p.numel() * int64_t(sizeof(float))));
    if (rank == 0) {
      std::ofstream l(out + "/loss.txt");
      for (size_t e = 0; e < h.loss.size(); ++e) l << h.loss[e] << " " << h.val_loss[e] << "\n";
    }
    return 0;
  } catch (const std::exception& e) {
    distributed::abort(1, e.what());
  }
}
