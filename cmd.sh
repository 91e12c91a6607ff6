# Source me: how recipe stages run their jobs. Usage in a recipe:
#   $train_cmd JOB=1:$nj $dir/log/extract.JOB.log python -m ... --shard JOB/$nj
#   $cuda_cmd --gpu 1 $dir/log/train.log python -m ...
# Backends (select with `export speechkd_backend=...` or edit the default below):
#   local  parallel processes on this machine, at most --max-jobs-run at once;
#   slurm  sbatch --array with the resources of conf/slurm.conf (partition, GPUs, CPUs, memory,
#          time per job class). Options given on the command line (--gpu, --mem, --num-threads,
#          --time) override the class defaults.
speechkd_backend=${speechkd_backend:-local}
# Slurm resources per job class: conf/slurm.conf, or your own file (speechkd_slurm_conf=...).
# Extra launcher options: --partition P, --ntasks N / --nodes M (multi-process jobs that start
# their workers with srun), --retries R. A one-node test cluster: local/slurm_cluster.sh start.
_launch="$SPEECHKD_ROOT/local/launch.sh --backend $speechkd_backend"
_launch="$_launch --config ${speechkd_slurm_conf:-$SPEECHKD_ROOT/conf/slurm.conf}"
export train_cmd="$_launch --class train --max-jobs-run ${speechkd_max_jobs:-2}"
export decode_cmd="$_launch --class decode --max-jobs-run ${speechkd_max_jobs:-2}"
export cuda_cmd="$_launch --class cuda --gpu 1 --max-jobs-run ${speechkd_max_gpu_jobs:-1}"
unset _launch
