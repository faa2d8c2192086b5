/*
 * flowlib.i - the one SWIG interface for every language.
 *
 * The whole C API is wrapped by `%include "flowlib.h"`: the typemaps in
 * bindings/<language>/*.swg match the API's parameter conventions (float
 * arrays, `flow_model **out`, `buf`/`cap`/`len` triples, uint64_t seeds), so a
 * new C function that follows them is wrapped with no change here, and one
 * that does not needs one %apply line. The generated module is a thin, 1:1
 * layer that returns flow_status; each language's hand-written Flow class on
 * top of it checks shapes, turns statuses into exceptions and owns handles.
 */
#if defined(SWIGPYTHON)
/* threads="1": every wrapped call releases the GIL while the C code runs. */
%module(package="flowlib", threads="1") capi
#elif defined(SWIGJAVA) || defined(SWIGCSHARP)
%module FlowNative
#else
#  error "flowlib.i: no typemaps for this target language"
#endif

%{
#include "flowlib.h"
%}

/* Spelled out rather than taken from <stdint.i>, whose uint64_t is
 * `unsigned long` on LP64 and would become a 32-bit uint in C#. */
typedef unsigned int uint32_t;
typedef unsigned long long uint64_t;
/* flowlib.h defines FLOW_API as a GCC attribute, which SWIG cannot parse. */
#define __attribute__(x)

#if defined(SWIGPYTHON)
%include "python/flowlib_python.swg"
#elif defined(SWIGJAVA)
%include "java/flowlib_java.swg"
#elif defined(SWIGCSHARP)
%include "csharp/flowlib_csharp.swg"
#endif

/* FLOW_STATUS_MAX_ENUM_ and the like only widen the C enums. */
%rename("$ignore", regexmatch$name="_MAX_ENUM_$") "";

%include "flowlib_version.h"
%include "flowlib.h"
