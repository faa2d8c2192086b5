# ctest abi_no_cuda: libflowlib.so must not depend on any CUDA library (the
# CUDA backend is the separate module libflowlib_cuda.so, loaded with dlopen),
# and that module must export only its entry point.
# Usage: cmake -DOBJDUMP=objdump -DNM=nm -DLIB=libflowlib.so [-DMODULE=libflowlib_cuda.so]
#        -P check_no_cuda.cmake
cmake_policy(VERSION 3.21)

execute_process(COMMAND "${OBJDUMP}" -p "${LIB}" OUTPUT_VARIABLE dump RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "'${OBJDUMP} -p ${LIB}' failed (${rc})")
endif()
string(REGEX MATCHALL "NEEDED +[^\n]+" needed "${dump}")
foreach(entry IN LISTS needed)
  if(entry MATCHES "cuda|cublas|nvidia")
    message(FATAL_ERROR "${LIB} links CUDA: ${entry}")
  endif()
endforeach()
list(LENGTH needed count)
message(STATUS "${LIB}: ${count} NEEDED entries, none of them CUDA")

if(MODULE)
  execute_process(COMMAND "${NM}" -D --defined-only "${MODULE}"
                  OUTPUT_VARIABLE nm_out RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "'${NM} -D --defined-only ${MODULE}' failed (${rc})")
  endif()
  string(REGEX MATCHALL "[A-Za-z] [A-Za-z_][A-Za-z0-9_]*\n" symbols "${nm_out}")
  foreach(sym IN LISTS symbols)
    string(STRIP "${sym}" sym)
    string(REGEX REPLACE "^[A-Za-z] " "" name "${sym}")
    # Section markers of the linker are not symbols of ours.
    if(NOT name STREQUAL "flowlib_cuda_open" AND NOT name MATCHES "^_(init|fini|edata|end|_bss_start)$")
      message(FATAL_ERROR "${MODULE} exports ${name}")
    endif()
  endforeach()
  message(STATUS "${MODULE}: exports only flowlib_cuda_open")
endif()
