#pragma once
// The processes of a data-parallel run (docs/DISTRIBUTED.md): started by mpirun / srun, each
// one a rank of MPI's world. fit trains across them with FitOptions::distributed; these say
// where this process stands, so that only rank 0 prints, logs and saves.
//
// MPI is initialised on the first call that needs it (never for a plain single process that
// was not started by an MPI launcher) and finalised when the program exits.
#include <string>

namespace cnn::distributed {

// Whether the library was built with MPI (CMake option CNN_MPI).
bool available();
// Whether an MPI launcher started this process (mpirun's OMPI_COMM_WORLD_SIZE, or PMI_SIZE /
// PMIX_RANK as srun and MPICH set), without initialising MPI.
bool launched_by_mpi();
// This process's rank and the number of ranks. They initialise MPI when it was launched by an
// MPI launcher or `init()` was called; otherwise 0 and 1, without MPI.
int rank();
int size();
// The rank among those on this machine (picks the GPU of a GPU rank).
int local_rank();
// Makes GPU (local rank mod the GPU count) this process's device: one GPU per rank. Call it
// before moving a model to CUDA (`cnn train --device cuda` does); nothing in a CPU-only build.
void use_local_gpu();
// Initialises MPI now (singleton MPI when no launcher started the process); fails with an
// error naming the reason when the library was built without MPI.
void init();
// Ends the whole job: prints "cnn: error on rank R of N: message" to stderr and aborts every
// rank (MPI_Abort); a single process just exits with `code`.
[[noreturn]] void abort(int code, const std::string& message);

}  // namespace cnn::distributed
