# ctest abi_exports: libflowlib.so must export exactly the FLOW_API functions
# of include/flowlib.h: nothing else (every symbol starts with flow_ and is
# declared) and nothing missing (every declared function is defined).
# Usage: cmake -DNM=nm -DLIB=libflowlib.so -DHEADER=flowlib.h -P check_exports.cmake
cmake_policy(VERSION 3.21)

foreach(var NM LIB HEADER)
  if(NOT ${var})
    message(FATAL_ERROR "check_exports: -D${var}=... is required")
  endif()
endforeach()

execute_process(COMMAND "${NM}" -D --defined-only "${LIB}"
                OUTPUT_VARIABLE nm_out RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "'${NM} -D --defined-only ${LIB}' failed (${rc})")
endif()

# Lines look like "0000000000012340 T flow_model_create" (an address may be absent).
set(exported "")
string(REPLACE "\n" ";" lines "${nm_out}")
foreach(line IN LISTS lines)
  if(line MATCHES "^([0-9a-fA-F]+ +)?[A-Za-z] +([^ ]+)$")
    list(APPEND exported "${CMAKE_MATCH_2}")
  endif()
endforeach()

file(READ "${HEADER}" header)
string(REGEX MATCHALL "FLOW_API[^;(]*[ *]flow_[A-Za-z0-9_]+[ \t]*\\(" decls "${header}")
set(declared "")
foreach(d IN LISTS decls)
  string(REGEX MATCH "flow_[A-Za-z0-9_]+[ \t]*\\($" fn "${d}")
  string(REGEX REPLACE "[ \t]*\\($" "" fn "${fn}")
  list(APPEND declared "${fn}")
endforeach()
if(NOT declared)
  message(FATAL_ERROR "no FLOW_API declarations found in ${HEADER}")
endif()

set(failed FALSE)
foreach(sym IN LISTS exported)
  if(NOT sym MATCHES "^flow_")
    message(SEND_ERROR "exported symbol without the flow_ prefix: ${sym}")
    set(failed TRUE)
  elseif(NOT sym IN_LIST declared)
    message(SEND_ERROR "exported but not declared in flowlib.h: ${sym}")
    set(failed TRUE)
  endif()
endforeach()
foreach(fn IN LISTS declared)
  if(NOT fn IN_LIST exported)
    message(SEND_ERROR "declared in flowlib.h but not exported: ${fn}")
    set(failed TRUE)
  endif()
endforeach()

list(LENGTH exported n_exp)
list(LENGTH declared n_decl)
message(STATUS "${n_exp} exported symbols, ${n_decl} declared API functions")
if(failed)
  message(FATAL_ERROR "ABI check failed for ${LIB}")
endif()
