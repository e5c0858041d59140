// The communicator behind data-parallel fit: MPI when the library was built with it
// (CNN_WITH_MPI), otherwise one rank that has nothing to exchange.
#include "model/distributed.hpp"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <vector>

#include "cnn/error.hpp"
#include "kernels/device_memory.hpp"

#if CNN_WITH_MPI
#include <mpi.h>
#endif
#if CNN_WITH_CUDA
#include "kernels/nccl.hpp"
#endif

namespace cnn::distributed {
namespace {

bool env_set(const char* name) {
  const char* v = std::getenv(name);
  return v && *v;
}

#if CNN_WITH_MPI
struct World {
  Communicator comm;
  int local_rank = 0;
  bool initialised = false;
};

World& world_state() {
  static World w;
  return w;
}

void finalize_at_exit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

void check_mpi(int code, const char* call) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  fail("distributed: ", call, " failed: ", std::string(text, size_t(length)));
}

World& initialised_world() {
  static std::once_flag once;
  std::call_once(once, [] {
    World& w = world_state();
    int already = 0;
    MPI_Initialized(&already);
    if (!already) {
      int provided = 0;
      // Only the thread that calls fit talks to MPI (the CPU kernels' threads never do).
      check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
      std::atexit(finalize_at_exit);
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &w.comm.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &w.comm.size);
    MPI_Comm local;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, w.comm.rank, MPI_INFO_NULL, &local);
    MPI_Comm_rank(local, &w.local_rank);
    MPI_Comm_free(&local);
    w.initialised = true;
  });
  return world_state();
}

// MPI counts are ints: long buffers go in chunks.
template <class F>
void in_chunks(int64_t count, F f) {
  for (int64_t at = 0; at < count; at += INT_MAX) f(at, int(std::min<int64_t>(INT_MAX, count - at)));
}
#endif

// Host copy of device data (or the data itself on the CPU).
struct HostView {
  std::vector<float> copy;
  float* data;
  HostView(float* p, int64_t count, Device d) : data(p) {
    if (d == Device::CPU) return;
    copy.resize(size_t(count));
    memory::copy(copy.data(), Device::CPU, p, d, size_t(count) * sizeof(float));
    data = copy.data();
  }
  void write_back(float* p, int64_t count, Device d) const {
    if (d != Device::CPU) memory::copy(p, d, copy.data(), Device::CPU, size_t(count) * sizeof(float));
  }
};

}  // namespace

bool available() { return CNN_WITH_MPI != 0; }

bool launched_by_mpi() {
  return env_set("OMPI_COMM_WORLD_SIZE") || env_set("PMI_SIZE") || env_set("PMIX_RANK");
}

void init() {
#if CNN_WITH_MPI
  initialised_world();
#else
  fail("distributed training needs MPI, but this build of the library has none (configure with -DCNN_MPI=ON and "
       "OpenMPI installed: libopenmpi-dev)");
#endif
}

const Communicator& world() {
#if CNN_WITH_MPI
  return initialised_world().comm;
#else
  CNN_CHECK(!launched_by_mpi(), "this process was started by an MPI launcher (mpirun/srun), but the library was "
                                "built without MPI (configure with -DCNN_MPI=ON and OpenMPI installed)");
  static const Communicator single;
  return single;
#endif
}

// Without a launcher MPI stays uninitialised (a singleton init() also has one rank); a build
// without MPI asks world(), which refuses a launched process with a clear error.
int rank() { return (launched_by_mpi() || CNN_WITH_MPI == 0) ? world().rank : 0; }
int size() { return (launched_by_mpi() || CNN_WITH_MPI == 0) ? world().size : 1; }
void use_local_gpu() {
#if CNN_WITH_CUDA
  cuda::select_device(local_rank());
#endif
}

int local_rank() {
#if CNN_WITH_MPI
  return launched_by_mpi() ? initialised_world().local_rank : 0;
#else
  return 0;
#endif
}

void abort(int code, const std::string& message) {
#if CNN_WITH_MPI
  int on = 0;
  MPI_Initialized(&on);
  if (on) {
    const Communicator& c = world_state().comm;
    std::fprintf(stderr, "cnn: error on rank %d of %d: %s\n", c.rank, c.size, message.c_str());
    std::fflush(stderr);
    std::fflush(stdout);
    MPI_Abort(MPI_COMM_WORLD, code);
  }
#endif
  std::fprintf(stderr, "cnn: error: %s\n", message.c_str());
  std::fflush(stdout);
  std::exit(code);
}

// ---- Collectives -----------------------------------------------------------------

void Communicator::broadcast(float* data, int64_t count, Device d) const {
  if (size == 1 || count == 0) return;
#if CNN_WITH_MPI
  HostView h(data, count, d);
  in_chunks(count, [&](int64_t at, int n) { check_mpi(MPI_Bcast(h.data + at, n, MPI_FLOAT, 0, MPI_COMM_WORLD), "MPI_Bcast"); });
  h.write_back(data, count, d);
#else
  (void)data;
  (void)d;
#endif
}

void Communicator::allreduce_mean(float* data, int64_t count, Device d, float local_weight, cuda::Context* ctx) const {
  if (size == 1 || count == 0) return;
#if CNN_WITH_MPI && CNN_WITH_NCCL
  if (d == Device::CUDA && ctx) {
    cuda::nccl_allreduce_mean(nccl(), *ctx, data, count, local_weight);
    return;
  }
#else
  (void)ctx;
#endif
#if CNN_WITH_MPI
  HostView h(data, count, d);
  if (local_weight != 1.0f)
    for (int64_t i = 0; i < count; ++i) h.data[i] *= local_weight;
  in_chunks(count, [&](int64_t at, int n) {
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, h.data + at, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
  });
  const float inv = 1.0f / float(size);
  for (int64_t i = 0; i < count; ++i) h.data[i] *= inv;
  h.write_back(data, count, d);
#else
  (void)data;
  (void)d;
  (void)local_weight;
#endif
}

void Communicator::on_device(cuda::Context& ctx, double* values, int count) const {
  if (size == 1 || count == 0) return;
#if CNN_WITH_MPI && CNN_WITH_NCCL
  cuda::nccl_allreduce_sum(nccl(), ctx, values, count);
#else
  ops::RankSum::on_device(ctx, values, count);
#endif
}

#if CNN_WITH_MPI && CNN_WITH_NCCL
cuda::NcclComm& Communicator::nccl() const {
  if (!nccl_) {  // rank 0's unique id to every rank over MPI, then NCCL's own rendezvous
    unsigned char id[cuda::kNcclIdBytes] = {};
    if (rank == 0) cuda::nccl_unique_id(id);
    check_mpi(MPI_Bcast(id, int(sizeof id), MPI_BYTE, 0, MPI_COMM_WORLD), "MPI_Bcast");
    nccl_ = cuda::nccl_create(id, rank, size);
  }
  return *nccl_;
}
#endif

struct Communicator::InFlight {
  struct Bucket {
    float* data;
    int64_t count;
  };
  std::vector<Bucket> buckets;  // scaled by 1 / size once reduced
  cuda::Context* nccl_stream_of = nullptr;  // NCCL buckets were started after this context's work
#if CNN_WITH_MPI
  std::vector<MPI_Request> requests;
#endif
};

void Communicator::start_bucket(float* data, int64_t count, Device d, float local_weight,
                                cuda::Context* ctx) const {
  if (size == 1 || count == 0) return;
  if (!in_flight_) in_flight_ = std::make_shared<InFlight>();
#if CNN_WITH_MPI && CNN_WITH_NCCL
  if (d == Device::CUDA && ctx) {
    cuda::nccl_start_bucket(nccl(), *ctx, data, count, local_weight);
    in_flight_->nccl_stream_of = ctx;
    return;
  }
#endif
#if CNN_WITH_MPI
  if (d == Device::CPU) {
    if (local_weight != 1.0f)
      for (int64_t i = 0; i < count; ++i) data[i] *= local_weight;
    in_chunks(count, [&](int64_t at, int n) {
      in_flight_->requests.emplace_back();
      check_mpi(MPI_Iallreduce(MPI_IN_PLACE, data + at, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD,
                               &in_flight_->requests.back()),
                "MPI_Iallreduce");
    });
    in_flight_->buckets.push_back({data, count});
    return;
  }
#endif
  allreduce_mean(data, count, d, local_weight, ctx);
}

void Communicator::finish_buckets() const {
  if (!in_flight_) return;
  InFlight& f = *in_flight_;
#if CNN_WITH_MPI && CNN_WITH_NCCL
  if (f.nccl_stream_of) cuda::nccl_join_buckets(nccl(), *f.nccl_stream_of);
  f.nccl_stream_of = nullptr;
#endif
#if CNN_WITH_MPI
  const int code = MPI_Waitall(int(f.requests.size()), f.requests.data(), MPI_STATUSES_IGNORE);
  f.requests.clear();
  if (code != MPI_SUCCESS) f.buckets.clear();
  check_mpi(code, "MPI_Waitall");
#endif
  const float inv = 1.0f / float(size);
  for (const InFlight::Bucket& b : f.buckets)
    for (int64_t i = 0; i < b.count; ++i) b.data[i] *= inv;
  f.buckets.clear();
}

void Communicator::allreduce_sum(double* data, int count) const {
  if (size == 1 || count == 0) return;
#if CNN_WITH_MPI
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, data, count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
#else
  (void)data;
#endif
}

std::vector<uint64_t> Communicator::allgather(const uint64_t* data, int count) const {
  std::vector<uint64_t> all(size_t(count) * size_t(size));
  if (size == 1) {
    std::copy_n(data, count, all.data());
    return all;
  }
#if CNN_WITH_MPI
  check_mpi(MPI_Allgather(data, count, MPI_UINT64_T, all.data(), count, MPI_UINT64_T, MPI_COMM_WORLD), "MPI_Allgather");
#endif
  return all;
}

void Communicator::barrier() const {
#if CNN_WITH_MPI
  if (size > 1) check_mpi(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
#endif
}

// ---- Shards and agreement ------------------------------------------------------------

EpochShards::EpochShards(int64_t rows, int batch, int ranks)
    : rows_(rows), global_(int64_t(batch) * ranks), ranks_(ranks) {
  CNN_CHECK(rows >= ranks, "fit: ", ranks, " ranks need at least ", ranks, " training rows, got ", rows);
  int64_t steps = (rows + global_ - 1) / global_;
  if (steps > 1 && rows - (steps - 1) * global_ < ranks) --steps;  // too few for every rank: join the step before
  steps_ = int(steps);
  max_rows_ = 0;  // the widest slice is ceil(step rows / ranks)
  for (int s : {0, steps_ - 1}) max_rows_ = std::max<int>(max_rows_, int((step_rows(s).count + ranks - 1) / ranks));
}

EpochShards::Range EpochShards::step_rows(int step) const {
  const int64_t first = int64_t(step) * global_;
  return {first, step == steps_ - 1 ? rows_ - first : global_};
}

EpochShards::Range EpochShards::rank_rows(int step, int rank) const {
  const Range s = step_rows(step);
  const int64_t begin = s.count * rank / ranks_, end = s.count * (rank + 1) / ranks_;
  return {s.first + begin, end - begin};
}

float EpochShards::gradient_weight(int step, int rank) const {
  const int64_t all = step_rows(step).count, mine = rank_rows(step, rank).count;
  return mine * ranks_ == all ? 1.0f : float(double(mine) * ranks_ / double(all));
}

void check_agreement(const Communicator& c, const std::vector<std::pair<std::string, uint64_t>>& fields,
                     const char* what) {
  std::vector<uint64_t> mine;
  for (const auto& f : fields) mine.push_back(f.second);
  const std::vector<uint64_t> all = c.allgather(mine.data(), int(mine.size()));
  const size_t n = mine.size();
  for (int r = 1; r < c.size; ++r)
    for (size_t i = 0; i < n; ++i) {
      const uint64_t theirs = all[size_t(r) * n + i], zero = all[i];
      if (theirs != zero)
        fail(what, ": rank ", r, " of ", c.size, " disagrees with rank 0 on ", fields[i].first, " (", theirs, " vs ", zero,
             "); every rank must train the same model on the same data with the same options");
    }
}

uint64_t fingerprint(const std::string& text) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : text) h = (h ^ ch) * 1099511628211ull;
  return h;
}

}  // namespace cnn::distributed
