// Crash and disk-full safety of model and checkpoint files (write_file_atomically: temporary
// file, fsync, rename). A helper process (tests/crash_helper.cpp, started with posix_spawn so
// that this process's threads are no concern) writes checkpoints until it is killed with
// SIGKILL at a random moment; the checkpoint on disk must then always load, complete. Saving
// into a full file system (a file-size limit: write() fails with EFBIG) must fail naming the
// file and the reason, and leave the previous file byte for byte.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstring>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cnn/cnn.hpp"
#include "crash_model.hpp"
#include "test_data_util.hpp"
#include "test_util.hpp"

extern char** environ;

namespace cnn {
namespace {

namespace fs = std::filesystem;

fs::path fresh_dir(const std::string& name) {
  const fs::path d = fs::path(testing::TempDir()) / (name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::string file_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// Files in dir other than `keep`; removed.
int remove_others(const fs::path& dir, const std::string& keep, std::vector<std::string>* names = nullptr) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().filename() == keep) continue;
    if (names) names->push_back(e.path().filename().string());
    fs::remove(e.path());
    ++n;
  }
  return n;
}

struct Child {
  pid_t pid = -1;
  int out = -1;  // its stdout
};

Child spawn_helper(const std::string& mode, const std::string& path) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return {};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  std::string helper = CNN_CRASH_HELPER, m = mode, p = path;
  char* argv[] = {helper.data(), m.data(), p.data(), nullptr};
  Child c;
  const int rc = posix_spawn(&c.pid, helper.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    return {};
  }
  c.out = fds[0];
  return c;
}

// Waits for the child's "ready" line.
bool wait_ready(const Child& c, int timeout_ms) {
  std::string got;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (got.find("ready") == std::string::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{c.out, POLLIN, 0};
    if (::poll(&p, 1, int(left.count())) <= 0) continue;
    char buf[64];
    const ssize_t n = ::read(c.out, buf, sizeof buf);
    if (n <= 0) return false;  // the child exited
    got.append(buf, size_t(n));
  }
  return true;
}

// SIGKILL, then reap; true when the child was still running (it never exits on its own).
bool kill_child(Child& c) {
  ::kill(c.pid, SIGKILL);
  int status = 0;
  ::waitpid(c.pid, &status, 0);
  ::close(c.out);
  return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

TEST(CrashSafety, CheckpointSurvivesSigkillAtRandomMomentsDuringSaves) {
  const fs::path dir = fresh_dir("crash_save");
  const std::string path = (dir / "run.ckpt").string();
  std::mt19937 rng(20240611);
  std::uniform_int_distribution<int> delay_us(0, 30000);
  const int rounds = 40;
  int interrupted = 0;  // kills that left a temporary file: the kill landed inside a save
  for (int round = 0; round < rounds; ++round) {
    Child c = spawn_helper("save", path);
    ASSERT_GT(c.pid, 0) << "cannot start " << CNN_CRASH_HELPER;
    ASSERT_TRUE(wait_ready(c, 60000)) << "the helper did not write its first checkpoint";
    std::this_thread::sleep_for(std::chrono::microseconds(delay_us(rng)));
    ASSERT_TRUE(kill_child(c)) << "the helper ended before it was killed (round " << round << ")";

    std::vector<std::string> others;
    if (remove_others(dir, "run.ckpt", &others) > 0) {
      ++interrupted;
      for (const auto& name : others) EXPECT_EQ(name.rfind("run.ckpt.tmp.", 0), 0u) << name;
    }
    TrainingProgress p;
    Sequential m;
    try {
      m = Sequential::load_checkpoint(path, &p);
    } catch (const Error& e) {
      FAIL() << "round " << round << ": the checkpoint left by a killed writer does not load: " << e.what();
    }
    // Checkpoint k holds epoch k, k % 1000 history entries and every weight equal to k: a
    // mixture of two saves would show.
    ASSERT_GE(p.epoch, 1);
    EXPECT_EQ(p.history.loss.size(), size_t(p.epoch % 1000));
    const std::vector<float> w = m.parameters().to_vector();
    const auto wrong = std::count_if(w.begin(), w.end(), [&](float v) { return v != float(p.epoch); });
    EXPECT_EQ(wrong, 0) << "round " << round << ": checkpoint " << p.epoch << " has " << wrong << " foreign weights";
  }
  std::printf("%d kills, %d of them inside a save\n", rounds, interrupted);
  EXPECT_GT(interrupted, 0) << "no kill landed inside a save: the test did not exercise the window";
  fs::remove_all(dir);
}

TEST(CrashSafety, TrainingCheckpointSurvivesSigkillAndResumes) {
  const fs::path dir = fresh_dir("crash_train");
  const std::string path = (dir / "train.ckpt").string();
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> delay_us(0, 150000);
  for (int round = 0; round < 10; ++round) {
    Child c = spawn_helper("train", path);
    ASSERT_GT(c.pid, 0) << "cannot start " << CNN_CRASH_HELPER;
    ASSERT_TRUE(wait_ready(c, 120000)) << "the helper did not finish its first epoch";
    std::this_thread::sleep_for(std::chrono::microseconds(delay_us(rng)));
    ASSERT_TRUE(kill_child(c)) << "the helper ended before it was killed (round " << round << ")";
    remove_others(dir, "train.ckpt");
    TrainingProgress p;
    try {
      const Sequential m = Sequential::load_checkpoint(path, &p);
      for (float v : m.parameters().to_vector()) ASSERT_TRUE(std::isfinite(v));
    } catch (const Error& e) {
      FAIL() << "round " << round << ": the checkpoint of a killed training run does not load: " << e.what();
    }
    ASSERT_GE(p.epoch, 1);
    EXPECT_EQ(p.history.epochs(), p.epoch);
  }
  // The last one resumes, and one more epoch lands on the weights of an uninterrupted run of
  // the same length (the helper's model, data and batch size; randomness is per epoch).
  TrainingProgress p;
  Sequential::load_checkpoint(path, &p);
  Sequential model = test::crash_test_model();
  const auto data = test::make_quadrant_data(64, 1, 32, 32, 5);
  FitOptions f;
  f.batch_size = 32;
  f.verbose = 0;
  f.epochs = p.epoch + 1;
  f.resume_from = path;
  EXPECT_EQ(model.fit(data.x, data.y, f).epochs(), p.epoch + 1);
  Sequential uninterrupted = test::crash_test_model();
  f.resume_from.clear();
  EXPECT_EQ(uninterrupted.fit(data.x, data.y, f).epochs(), p.epoch + 1);
  const std::vector<float> resumed = model.parameters().to_vector(), straight = uninterrupted.parameters().to_vector();
  const auto differing = std::mismatch(resumed.begin(), resumed.end(), straight.begin(), straight.end());
  EXPECT_TRUE(differing.first == resumed.end() && differing.second == straight.end())
      << "after " << p.epoch << " + 1 epochs the resumed weights differ from an uninterrupted run's at parameter "
      << (differing.first - resumed.begin());
  EXPECT_NE(straight, test::crash_test_model().parameters().to_vector()) << "training did not move the weights";
  fs::remove_all(dir);
}

// Sets a file-size limit (the soft one) for the lifetime of the object, with SIGXFSZ ignored
// so that a write past it fails with EFBIG, as on a full disk, instead of killing the process.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    ::getrlimit(RLIMIT_FSIZE, &old_);
    old_handler_ = std::signal(SIGXFSZ, SIG_IGN);
    rlimit lim = old_;
    lim.rlim_cur = bytes;
    ok_ = ::setrlimit(RLIMIT_FSIZE, &lim) == 0;
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &old_);
    std::signal(SIGXFSZ, old_handler_);
  }
  bool ok() const { return ok_; }

 private:
  rlimit old_{};
  void (*old_handler_)(int) = nullptr;
  bool ok_ = false;
};


TEST(DiskFull, SavingFailsNamingFileAndReasonAndKeepsThePreviousFile) {
  const fs::path dir = fresh_dir("disk_full");
  const std::string model_path = (dir / "model.safetensors").string(), ckpt_path = (dir / "run.ckpt").string();
  Sequential old_model = test::crash_test_model();
  old_model.save(model_path);
  old_model.save_checkpoint(ckpt_path, {3, {}});
  const std::string model_before = file_bytes(model_path), ckpt_before = file_bytes(ckpt_path);
  ASSERT_GT(model_before.size(), 256u * 1024);

  Sequential new_model = test::crash_test_model();
  auto w = new_model.weights();
  for (auto& [name, t] : w) t.fill(0.5f);
  new_model.set_weights(w);
  std::string model_error, ckpt_error;
  {
    FileSizeLimit limit(64 * 1024);  // the "disk" fills after 64 KiB of the new file
    ASSERT_TRUE(limit.ok());
    model_error = test::error_of([&] { new_model.save(model_path); });
    ckpt_error = test::error_of([&] { new_model.save_checkpoint(ckpt_path, {4, {}}); });
  }
  for (const auto& [msg, path] : {std::pair{model_error, model_path}, std::pair{ckpt_error, ckpt_path}}) {
    EXPECT_NE(msg.find("cannot save '" + path + "'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("write failed: " + std::string(std::strerror(EFBIG))), std::string::npos) << msg;
    EXPECT_NE(msg.find("the previous file is unchanged"), std::string::npos) << msg;
  }
  // The previous files are untouched, load, and no temporary file is left.
  EXPECT_TRUE(file_bytes(model_path) == model_before);
  EXPECT_TRUE(file_bytes(ckpt_path) == ckpt_before);
  EXPECT_EQ(Sequential::load(model_path).parameters().to_vector(), old_model.parameters().to_vector());
  TrainingProgress p;
  EXPECT_EQ(Sequential::load_checkpoint(ckpt_path, &p).parameters().to_vector(), old_model.parameters().to_vector());
  EXPECT_EQ(p.epoch, 3);
  std::vector<std::string> others;
  remove_others(dir, "model.safetensors", &others);
  EXPECT_EQ(others, std::vector<std::string>{"run.ckpt"});
  fs::remove_all(dir);
}

TEST(DiskFull, FitStopsWithTheReasonAndTheLastCheckpointSurvives) {
  const fs::path dir = fresh_dir("disk_full_fit");
  const std::string path = (dir / "fit.ckpt").string();
  const auto data = test::make_quadrant_data(64, 1, 32, 32, 5);
  Sequential model = test::crash_test_model();
  FitOptions f;
  f.batch_size = 32;
  f.verbose = 0;
  f.epochs = 1;
  f.checkpoint_path = path;
  model.fit(data.x, data.y, f);
  const std::string before = file_bytes(path);
  f.epochs = 3;
  f.resume_from = path;
  std::string msg;
  {
    FileSizeLimit limit(64 * 1024);
    ASSERT_TRUE(limit.ok());
    msg = test::error_of([&] { model.fit(data.x, data.y, f); });
  }
  EXPECT_NE(msg.find("cannot save '" + path + "'"), std::string::npos) << msg;
  EXPECT_NE(msg.find(std::strerror(EFBIG)), std::string::npos) << msg;
  EXPECT_TRUE(file_bytes(path) == before);
  TrainingProgress p;
  Sequential::load_checkpoint(path, &p);
  EXPECT_EQ(p.epoch, 1);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace cnn
