// OpenMPI's handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, MPI_IN_PLACE, …)
// are macros over global structs, which Swift cannot import; these static
// inline accessors hand them to Swift. Only IWAEMPI imports this module,
// and only with the package trait MPI.
#include <mpi.h>

static inline MPI_Comm iwae_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype iwae_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype iwae_mpi_uint64(void) { return MPI_UINT64_T; }
static inline MPI_Op iwae_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op iwae_mpi_bor(void) { return MPI_BOR; }
static inline void *iwae_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Info iwae_mpi_info_null(void) { return MPI_INFO_NULL; }
static inline int iwae_mpi_comm_type_shared(void) { return MPI_COMM_TYPE_SHARED; }
static inline int iwae_mpi_thread_funneled(void) { return MPI_THREAD_FUNNELED; }
