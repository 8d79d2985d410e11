# isa.bash - the --isa option of scripts/bench-vs-llamacpp.sh and scripts/bench-vs-ggml.sh,
# sourced by both after their option parsing (they define die2: exit 2 with a message).
#   isa_setup ISA   checks ISA (native or avx2); with avx2, that the CPU has AVX2, FMA and F16C and
#                   that DSINFER_KERNELS does not ask for another level, then exports
#                   DSINFER_KERNELS=avx2. Sets ISA_SUFFIX (the build folder's: "" or "-avx2") and
#                   ISA_FLAGS (cmake options of llama.cpp / ggml: native, or AVX2 and below only).
isa_setup() {
  case $1 in native | avx2) ;; *) die2 "--isa must be native or avx2, not '$1'" ;; esac
  ISA_SUFFIX="" ISA_FLAGS=(-DGGML_NATIVE=ON)
  [ "$1" = avx2 ] || return 0
  [ -z "${DSINFER_KERNELS:-}" ] || [ "$DSINFER_KERNELS" = avx2 ] ||
    die2 "--isa avx2 runs dsinfer with DSINFER_KERNELS=avx2, but DSINFER_KERNELS is '$DSINFER_KERNELS'"
  local flag
  for flag in avx2 fma f16c; do
    grep -qw "$flag" /proc/cpuinfo 2>/dev/null || die2 "--isa avx2: this CPU lacks ${flag^^}"
  done
  export DSINFER_KERNELS=avx2
  ISA_SUFFIX=-avx2
  ISA_FLAGS=(-DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_BMI2=ON -DGGML_FMA=ON
    -DGGML_F16C=ON -DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF
    -DGGML_AVX512_BF16=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF)
}
