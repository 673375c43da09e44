r"""Training on several processes with MPI: data, pipeline and tensor parallelism, and the
ring allreduce by hand.

`mpiexec -n N python script.py` starts $N$ processes; `world()` gives each its communicator
(`rank`, `size`, allreduce, broadcast, messages). Without `mpiexec` the same script runs as
one process, and nothing here imports `mpi4py` until more than one process asks for it
(`pip install "nima[mpi]"` installs it, with an MPI runtime).
"""

from nima.distributed.clip import clip_grad_norm_, global_grad_norm
from nima.distributed.comm import (
    INSTALL_HINT,
    Communicator,
    DistributedError,
    MPICommunicator,
    SingleProcess,
    launched_size,
    world,
)
from nima.distributed.data_parallel import DataParallel, FlatBuffer
from nima.distributed.launch import (
    abort_on_error,
    mpi_available,
    mpiexec_command,
    mpiexec_path,
    run_job,
)
from nima.distributed.pipeline import (
    GPTStage,
    Pipeline,
    Span,
    bubble_fraction,
    recv_array,
    send_array,
)
from nima.distributed.ring import chunk_bounds, ring_allreduce
from nima.distributed.tensor_parallel import (
    ColumnParallelLinear,
    CopyToParallel,
    ReduceFromParallel,
    RowParallelLinear,
    TensorParallelAttention,
    counted_parameters,
    parallelize_feedforward,
    parallelize_gpt,
    shard,
)
