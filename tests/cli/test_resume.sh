# A run stopped early (by --steps, or by Ctrl-C) and resumed from its
# checkpoint ends with exactly the parameters of an uninterrupted run.
source "$(dirname "$0")/lib.sh"

opts=(--layers 2 --hidden 16 --batch 32 --epochs 3 --seed 5 --val 0.2 --threads 1 -q)
run data pinwheel -n 400 -o pin.npy

# Uninterrupted: 3 epochs of 10 steps.
run train pin.npy -o full.safetensors "${opts[@]}"
run info full.safetensors.ckpt
full_sum=$(grep -o 'checksum [0-9a-f]*' <<<"$out")
contains "$out" "steps:       30"

# Stopped after 13 steps (mid-epoch), then resumed.
run train pin.npy -o part.safetensors "${opts[@]}" --steps 13
run info part.safetensors.ckpt
contains "$out" "steps:       13"
[[ -f part.safetensors.ckpt.json ]] || die "no checkpoint sidecar"
run train --resume part.safetensors.ckpt --steps 0
run info part.safetensors.ckpt
contains "$out" "steps:       30"
[[ $(grep -o 'checksum [0-9a-f]*' <<<"$out") == "$full_sum" ]] || die "resumed run differs: $out"
cmp -s full.safetensors.ckpt part.safetensors.ckpt || die "resumed checkpoint file differs"
# The best model was chosen at the same step.
cmp -s full.safetensors part.safetensors || die "best models differ"

# Periodic checkpoints, then resume from one of them.
run train pin.npy -o per.safetensors "${opts[@]}" --steps 20 --checkpoint-every 7 --checkpoint per.ckpt
run info per.ckpt
contains "$out" "steps:       20"

# Ctrl-C: the program saves a checkpoint and exits 130; resuming finishes the
# same run. (If the run ends before the signal lands, it still must match.)
long=(--layers 2 --hidden 16 --batch 32 --epochs 1000 --seed 5 --val 0.2 --patience 0 --threads 1)
run train pin.npy -o ref.safetensors "${long[@]}" -q
run info ref.safetensors.ckpt
ref_sum=$(grep -o 'checksum [0-9a-f]*' <<<"$out")
"$FLOWLIB" train pin.npy -o int.safetensors "${long[@]}" -q >/dev/null 2>int_err.txt &
pid=$!
sleep 0.7
kill -INT "$pid" 2>/dev/null || true
rc=0
wait "$pid" || rc=$?
if ((rc == 130)); then
    grep -q "interrupted at step [0-9]*; checkpoint saved to int.safetensors.ckpt" int_err.txt ||
        die "no interruption message: $(cat int_err.txt)"
    grep -q "resume with: flowlib train --resume int.safetensors.ckpt" int_err.txt || die "no resume hint"
    run train --resume int.safetensors.ckpt
else
    ((rc == 0)) || die "interrupted run exited with $rc: $(cat int_err.txt)"
    echo "note: the run finished before Ctrl-C arrived"
fi
run info int.safetensors.ckpt
[[ $(grep -o 'checksum [0-9a-f]*' <<<"$out") == "$ref_sum" ]] || die "run resumed after Ctrl-C differs"
cmp -s ref.safetensors.ckpt int.safetensors.ckpt || die "checkpoint after Ctrl-C + resume differs"

fails 'no such checkpoint' train --resume nothing.ckpt
cp pin.npy lonely.ckpt
fails 'not a checkpoint of flowlib train' train --resume lonely.ckpt
done_ok
