# File formats round trip through the program as a user would use it:
# data -> .npy/.csv -> train -> eval / sample -> .npy/.csv/.png, plus idx(.gz)
# images and a conditional model trained from chosen CSV columns.
source "$(dirname "$0")/lib.sh"

small=(--layers 2 --hidden 16 --epochs 2 --batch 64 --threads 1 -q)

# Every built-in data set, to both table formats and a picture.
for name in two_moons eight_gaussians checkerboard pinwheel two_spirals rings; do
    run data "$name" -n 300 --seed 3 -o "$name.npy"
    run data "$name" -n 300 --seed 3 -o "$name.csv"
    contains "$out" "wrote $name.csv: 300 rows of $name"
done
run data rings -n 2000 -o rings.png
head -c 8 rings.png | od -An -c | grep -q 'P   N   G' || die "rings.png is not a PNG"

# The same data from .npy and .csv train the same model.
run train two_moons.npy -o npy.safetensors --seed 1 "${small[@]}"
contains "$out" "best validation NLL"
run train two_moons.csv -o csv.safetensors --seed 1 "${small[@]}"
run info npy.safetensors
sum_npy=$(grep -o 'checksum [0-9a-f]*' <<<"$out")
contains "$out" "format:      flowlib model format"
contains "$out" "dim:         2"
contains "$out" "parameters:  [0-9]+"
contains "$out" "spec:        \{"
run info csv.safetensors
[[ $(grep -o 'checksum [0-9a-f]*' <<<"$out") == "$sum_npy" ]] || die "npy and csv training differ"
run info --spec npy.safetensors
contains "$out" '^\{"base"'

# eval: the same numbers from .npy and .csv, per-row output in both formats.
run eval npy.safetensors two_moons.npy --out lp.npy
ll_npy=$(grep 'log-likelihood' <<<"$out")
contains "$out" "wrote lp.npy: 300 log-densities"
run eval npy.safetensors two_moons.csv --out lp.csv
[[ $(grep 'log-likelihood' <<<"$out") == "$ll_npy" ]] || die "eval of .npy and .csv differ"
[[ $(head -1 lp.csv) == log_prob ]] || die "lp.csv has no header"
(($(wc -l <lp.csv) == 301)) || die "lp.csv should have 300 rows"

# sample: same seed, same samples, in every format.
run sample npy.safetensors -n 50 --seed 9 -o s1.npy
run sample npy.safetensors -n 50 --seed 9 -o s2.npy
cmp -s s1.npy s2.npy || die "sampling with one seed is not reproducible"
run sample csv.safetensors -n 50 --seed 9 -o s.csv --log-prob
[[ $(head -1 s.csv) == "x,y,log_prob" ]] || die "s.csv header: $(head -1 s.csv)"
run sample npy.safetensors -n 50 --seed 9 -t 0.5 -o s.png
run eval npy.safetensors s1.npy
contains "$out" "50 rows"
run plot npy.safetensors -o fig.png -n 2000 --size 64
contains "$out" "data \(left\), model density \(middle\)"

# CSV with a header: chosen columns as data, one as context.
{
    echo "a,b,label"
    for ((i = 0; i < 200; i++)); do echo "$((i % 17)).5,$((i % 5)).25,$((i % 2))"; done
} >cond.csv
run train cond.csv --context label -o cond.safetensors "${small[@]}"
run info cond.safetensors
contains "$out" "context_dim: 1"
run eval cond.safetensors cond.csv      # the sidecar says which column is context
contains "$out" "200 rows"
run sample cond.safetensors -n 10 --context 1 -o cs.csv
[[ $(head -1 cs.csv) == "a,b" ]] || die "cs.csv header: $(head -1 cs.csv)"
fails 'give its 1 context values' sample cond.safetensors -n 10 -o cs.csv
# The same without a header, columns by number.
tail -n +2 cond.csv >nohead.csv
run train nohead.csv --no-header --columns 0-1 --context 2 -o nohead.safetensors "${small[@]}"

# idx images, plain and gzip-compressed: dequantized, bits/dim, PNG grids.
idx img.idx 40 4 4
gzip -c img.idx >img-idx3-ubyte.gz
run train img-idx3-ubyte.gz -o img.safetensors "${small[@]}" --val 0.25
contains "$out" "bits/dim"
run info img.safetensors
contains "$out" "images of 4x4\), discrete data of 256 levels"
run eval img.safetensors img.idx
contains "$out" "bits/dim: [0-9.]+"
run sample img.safetensors -n 9 -o grid.png
contains "$out" "9 samples as 4x4 images"
run sample img.safetensors -n 9 -o imgs.npy
run eval img.safetensors imgs.npy       # samples are integer images again
run plot img.safetensors -o img_fig.png
contains "$out" "training images"
# uint8 .npy images are discrete too.
npy u8.npy '|u1' '(1, 4, 4)' '\x00\x01\x02\x03\xfc\xfd\xfe\xff\x00\x01\x02\x03\xfc\xfd\xfe\xff'
run eval img.safetensors u8.npy
contains "$out" "1 rows"
fails '2 data columns, but the model takes 16' eval img.safetensors two_moons.npy
done_ok
