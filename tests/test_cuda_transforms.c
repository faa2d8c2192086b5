/*
 * The transform properties of test_transforms.c (DESIGN.md section 6), every
 * model on the CUDA device; exits 77 (skipped) when there is none.
 */
#define TU_DEVICE FLOW_DEVICE_CUDA
#define TU_CUDA_SUITE
#include "test_transforms.c"
