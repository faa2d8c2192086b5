# Malformed .npy, .csv, idx and model files give one clear line naming the
# file and what is wrong, and exit status 1: never a crash.
source "$(dirname "$0")/lib.sh"

t=(--layers 1 --hidden 4 --epochs 1 --threads 1 -q)

# .npy
printf 'not numpy at all' >magic.npy
fails 'magic.npy: not a valid .npy file: no \\x93NUMPY magic' train magic.npy -o m.safetensors "${t[@]}"
npy short.npy '<f4' '(4, 2)' '\x00\x00\x80\x3f'
fails 'short.npy: not a valid .npy file: the shape needs 32 bytes of data, the file has 4' train short.npy -o m.safetensors "${t[@]}"
npy huge.npy '<f4' '(99999999999999, 99999999999999)' ''
fails 'huge.npy: not a valid .npy file: the shape needs more than 2\^64 bytes' train huge.npy -o m.safetensors "${t[@]}"
npy dtype.npy '<c8' '(1, 2)' '\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00'
fails "dtype.npy: not a valid .npy file: unsupported dtype '<c8'" train dtype.npy -o m.safetensors "${t[@]}"
npy fort.npy '<f4' '(1, 2)' '\x00\x00\x80\x3f\x00\x00\x80\x3f'
sed -i 's/False/True /' fort.npy
fails 'fort.npy: Fortran-order arrays are not supported' train fort.npy -o m.safetensors "${t[@]}"
npy shape.npy '<f4' '(1, two)' '\x00\x00\x80\x3f'
fails 'shape.npy: not a valid .npy file: shape must be a tuple of integers' train shape.npy -o m.safetensors "${t[@]}"
npy nan.npy '<f4' '(1, 2)' '\x00\x00\xc0\x7f\x00\x00\x80\x3f'
fails 'nan.npy: row 0, column 0 is not a finite number' train nan.npy -o m.safetensors "${t[@]}"
printf '\x93NUMPY\x01\x00\xff\x7f{' >hdr.npy
fails 'hdr.npy: not a valid .npy file: the header claims 32767 bytes, the file has 1' train hdr.npy -o m.safetensors "${t[@]}"
printf '\x93NUMPY\x09\x00\x00\x00' >ver.npy
fails 'ver.npy: not a valid .npy file: format version 9 is not supported' train ver.npy -o m.safetensors "${t[@]}"

# .csv
printf 'x,y\n1,2\n3\n' >ragged.csv
fails 'ragged.csv:3: 1 fields, expected 2' train ragged.csv -o m.safetensors "${t[@]}"
printf '1,2\n3,abc\n' >word.csv
fails 'ragged.csv|word.csv:2: field 2 \("abc"\) is not a number' train word.csv -o m.safetensors "${t[@]}"
printf 'x,y\n' >empty.csv
fails 'empty.csv: no data rows' train empty.csv -o m.safetensors "${t[@]}"
printf '1,2\n"3,4\n' >quote.csv
fails 'quote.csv:2: unterminated quoted field' train quote.csv -o m.safetensors "${t[@]}"
printf '1,2\n3,nan\n' >nan.csv
fails 'nan.csv:2: field 2 is not a finite number' train nan.csv -o m.safetensors "${t[@]}"
printf '1,2\0\n' >nul.csv
fails 'nul.csv: not a text file' train nul.csv -o m.safetensors "${t[@]}"
printf 'a,b\n1,2\n3,4\n' >ok.csv
fails '--columns: ok.csv has no column "c"' train ok.csv --columns a,c -o m.safetensors "${t[@]}"
fails '--context: 7 is out of range' train ok.csv --context 7 -o m.safetensors "${t[@]}"

# idx
printf '\x01\x02\x08\x01\x00\x00\x00\x01\x05' >magic.idx
fails 'magic.idx: not a valid idx file: the magic does not start with two zero bytes' train magic.idx -o m.safetensors "${t[@]}"
printf '\x00\x00\x07\x01\x00\x00\x00\x01\x05' >type.idx
fails 'type.idx: not a valid idx file: unknown data type 0x07' train type.idx -o m.safetensors "${t[@]}"
printf '\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00\x02\x01\x02\x03' >trunc.idx
fails 'trunc.idx: not a valid idx file: truncated: the header promises 8 values, the file holds 3' train trunc.idx -o m.safetensors "${t[@]}"
printf '\x00\x00\x08\x03\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff' >huge.idx
fails 'huge.idx: not a valid idx file: (a row is|the data are) unreasonably large' train huge.idx -o m.safetensors "${t[@]}"
printf '\x00\x00\x08\x02\x00\x00\x00\x01\x00\x00' >dims.idx
fails 'dims.idx: not a valid idx file: truncated in the dimension sizes' train dims.idx -o m.safetensors "${t[@]}"
printf '\x00\x00\x08\x02\x00\x00\x00\x01\x00\x00\x00\x02\x01\x02\x03' >long.idx
fails 'long.idx: not a valid idx file: data continue past' train long.idx -o m.safetensors "${t[@]}"
idx good.idx 4 2 2
gzip -c good.idx | head -c 30 >cut-idx.gz
fails 'cut-idx.gz: ' train cut-idx.gz -o m.safetensors "${t[@]}"
{ gzip -c good.idx | head -c 12; printf 'garbage garbage garbage garbage'; } >bad-idx.gz
fails 'bad-idx.gz: ' train bad-idx.gz -o m.safetensors "${t[@]}"

# Model files
printf 'garbage' >bad.safetensors
fails 'bad.safetensors' info bad.safetensors
fails 'bad.safetensors' eval bad.safetensors ok.csv
fails 'bad.safetensors' sample bad.safetensors -o s.npy
run data two_moons -n 200 -o moons.csv
run train moons.csv -o m.safetensors "${t[@]}" --val 0
head -c 1000 m.safetensors >cut.safetensors
fails 'cut.safetensors' info cut.safetensors
printf '{"flowlib_cli": 1, "data": {"shape": "x"}}' >m.safetensors.json
fails 'm.safetensors.json: malformed sidecar' info m.safetensors
# Wrong spec and options are one line too.
fails '--layers: 0 is out of range' train moons.csv -o m2.safetensors --layers 0 -q
fails 'model spec: .*activation.*sigmoid' train moons.csv -o m2.safetensors --activation sigmoid -q
fails '--spec: .*not a JSON object' train moons.csv -o m2.safetensors --spec '{oops' -q
fails 'model spec: .*unknown field' train moons.csv -o m2.safetensors --spec '{"preset":"realnvp","wings":2}' -q
done_ok
