# --device cuda: training, evaluation and sampling on the GPU, and model
# files moving between devices. Runs on the emulated GPU (the module ctest
# names in FLOWLIB_CUDA_EMULATION), so it runs on every machine; the same
# seed gives the same model on both devices.
source "$(dirname "$0")/lib.sh"
emulated=${FLOWLIB_CUDA_EMULATION:?ctest sets it: the emulated CUDA module}

opts=(--layers 2 --hidden 16 --batch 32 --epochs 2 --seed 5 --val 0.2 --threads 1 -q)
run data pinwheel -n 400 -o pin.npy

# Without a CUDA module: one clear line, no crash.
export FLOWLIB_CUDA_MODULE=/nonexistent/libflowlib_cuda.so
fails 'no CUDA device' train pin.npy -o none.safetensors "${opts[@]}" --device cuda

export FLOWLIB_CUDA_MODULE=$emulated
run train pin.npy -o cpu.safetensors "${opts[@]}"
run train pin.npy -o gpu.safetensors "${opts[@]}" --device cuda
# nats per row, as eval prints it
nll() { grep -Eo 'NLL: +[-0-9.]+' <<<"$out" | grep -Eo '[-0-9.]+$'; }
run eval cpu.safetensors pin.npy
cpu_nll=$(nll)
run eval gpu.safetensors pin.npy --device cuda
gpu_nll=$(nll)
run eval gpu.safetensors pin.npy
cross_nll=$(nll)
awk -v a="$cpu_nll" -v b="$gpu_nll" -v c="$cross_nll" 'BEGIN {
    d1 = a - b; d2 = b - c; if (d1 < 0) d1 = -d1; if (d2 < 0) d2 = -d2
    exit !(d1 < 1e-3 && d2 < 1e-3) }' ||
    die "NLL differs: cpu-trained $cpu_nll, gpu-trained on gpu $gpu_nll, on cpu $cross_nll"

# The CPU-trained file samples on the GPU, seeded like the CPU.
run sample cpu.safetensors -n 50 --seed 3 -o cpu_samples.csv
run sample cpu.safetensors -n 50 --seed 3 --device cuda -o gpu_samples.csv
paste -d, cpu_samples.csv gpu_samples.csv | awk -F, 'NR > 1 {
    for (j = 1; j <= 2; j++) { d = $j - $(j + 2); if (d < 0) d = -d; if (d > 1e-4 * (1 + ($j < 0 ? -$j : $j))) bad++ } }
    END { exit bad > 0 }' || die "GPU samples differ from the CPU's"
done_ok
