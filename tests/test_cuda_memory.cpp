// CPU-vs-CUDA parity of the memory ops and the GEMMs, and the CUDA backend's
// error paths (see cuda_parity.h for how the suite runs and skips).
#include "cuda_parity.h"

#include <cstdlib>
#include <cstring>

using namespace parity;

Test(cuda_memory, upload_download_copy_fill_round_trip) {
    const Vec data = random_vec(1000, 1);
    Pair p = pair({100, 10}, data);
    cr_expect(values(p.gpu) == data, "upload/download changed the values");
    Tensor copy(gpu(), {100, 10});
    gpu().copy(p.gpu, copy);
    cr_expect(values(copy) == data, "device copy changed the values");
    gpu().fill(copy, 2.5f);
    cr_expect(values(copy) == Vec(1000, 2.5f), "fill");
    // A view: rows 10..19 only.
    Tensor block = p.gpu.row_block(10, 10);
    cr_expect(values(block) == Vec(data.begin() + 100, data.begin() + 200), "row block view");
    Tensor empty(gpu(), {0, 10});
    gpu().fill(empty, 1.0f);
    cr_expect(values(empty).empty());
}

Test(cuda_memory, index_tensors_keep_their_bits) {
    const std::vector<int32_t> index{3, 0, 2, 1, 7, -5};
    Pair p = index_pair(index);
    std::vector<int32_t> back(index.size());
    gpu().download(p.gpu, back.data());
    cr_expect(back == index);
}

// All four transpose combinations, shapes that are not multiples of anything,
// alpha/beta that exercise accumulation.
Test(cuda_memory, gemm_matches_the_cpu_for_every_transpose) {
    const size_t m = 37, n = 29, k = 53;
    for (int ta = 0; ta < 2; ++ta)
        for (int tb = 0; tb < 2; ++tb) {
            Pair a = random_pair(ta ? std::vector<size_t>{k, m} : std::vector<size_t>{m, k}, 2);
            Pair b = random_pair(tb ? std::vector<size_t>{n, k} : std::vector<size_t>{k, n}, 3);
            Pair c = random_pair({m, n}, 4);
            cpu().gemm(ta, tb, 0.75f, a.cpu, b.cpu, -0.5f, c.cpu);
            gpu().gemm(ta, tb, 0.75f, a.gpu, b.gpu, -0.5f, c.gpu);
            char what[64];
            std::snprintf(what, sizeof what, "gemm trans_a=%d trans_b=%d", ta, tb);
            expect_close(c, 1e-5, what);
        }
}

Test(cuda_memory, gemm_bias_matches_the_cpu) {
    const size_t m = 300, n = 64, k = 40;
    Pair a = random_pair({m, k}, 5), w = random_pair({n, k}, 6), v = random_pair({n}, 7);
    Pair c = filled_pair({m, n}, 0.0f);
    cpu().gemm_bias(false, true, a.cpu, w.cpu, v.cpu, c.cpu);
    gpu().gemm_bias(false, true, a.gpu, w.gpu, v.gpu, c.gpu);
    expect_close(c, 1e-5, "gemm_bias");
}

Test(cuda_memory, gemm_bias_activation_matches_the_cpu) {
    const size_t m = 300, n = 64, k = 40;
    Pair a = random_pair({m, k}, 8), w = random_pair({n, k}, 9), v = random_pair({n}, 10);
    for (flow::Activation act : {flow::Activation::relu, flow::Activation::leaky_relu,
                                 flow::Activation::tanh}) {
        Pair pre = filled_pair({m, n}, 0.0f), y = filled_pair({m, n}, 0.0f);
        cpu().gemm_bias_activation(false, true, a.cpu, w.cpu, v.cpu, act, pre.cpu, y.cpu);
        gpu().gemm_bias_activation(false, true, a.gpu, w.gpu, v.gpu, act, pre.gpu, y.gpu);
        expect_close(pre, 1e-5, "gemm_bias_activation pre");
        expect_close(y, 1e-5, "gemm_bias_activation y");
    }
}

Test(cuda_memory, shape_errors_are_internal_errors_not_crashes) {
    Tensor a(gpu(), {4, 3}), b(gpu(), {5, 2}), c(gpu(), {4, 2});
    try {
        gpu().gemm(false, false, 1.0f, a, b, 0.0f, c);
        cr_assert_fail("a gemm with mismatched inner dimensions succeeded");
    } catch (const flow::Error &e) {
        cr_expect_eq(e.status(), flow::Status::internal, "%s", e.what());
    }
}

// Only the emulated device can be made to run out of memory on demand.
Test(cuda_memory, out_of_memory_is_reported_and_the_backend_stays_usable) {
    if (!std::getenv("FLOWLIB_CUDA_MODULE") ||
        !std::strstr(std::getenv("FLOWLIB_CUDA_MODULE"), "emulation"))
        cr_skip_test("needs the emulated device (its memory cap is settable)");
    setenv("FLOWLIB_CUDA_EMULATION_MEMORY", "1000000", 1);
    try {
        Tensor big(gpu(), {1000, 1000});
        cr_assert_fail("a 4 MB allocation under a 1 MB cap succeeded");
    } catch (const flow::Error &e) {
        cr_expect_eq(e.status(), flow::Status::out_of_memory, "%s", e.what());
        cr_expect(std::strstr(e.what(), "out of memory"), "message: %s", e.what());
    }
    unsetenv("FLOWLIB_CUDA_EMULATION_MEMORY");
    Pair p = random_pair({10, 10}, 8);
    cr_expect(values(p.gpu) == values(p.cpu));
}
