# cmake -P script: compiles the SWIG-generated and the hand-written classes
# and packs flowlib.jar. A script rather than a custom command because javac
# cannot glob, and the generated file list is only known after SWIG has run.
#   -DJAVAC= -DJAR= -DGENERATED=<swig outdir> -DSOURCES=<org/flowlib dir>
#   -DCLASSES=<scratch dir> -DJARFILE=<out> -DINSTALLED_JNI=<path relative to the installed jar>
file(GLOB sources "${GENERATED}/*.java" "${SOURCES}/*.java")
file(REMOVE_RECURSE "${CLASSES}")
file(MAKE_DIRECTORY "${CLASSES}/org/flowlib")
execute_process(
  COMMAND "${JAVAC}" --release 17 -Xlint:all -Xlint:-serial -encoding UTF-8 -d "${CLASSES}" ${sources}
  RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "javac failed")
endif()
file(WRITE "${CLASSES}/org/flowlib/native.properties"
  "# Where cmake --install put libflowlib_jni.so, relative to the jar (see NativeLoader)\n"
  "installed=${INSTALLED_JNI}\n")
execute_process(COMMAND "${JAR}" --create --file "${JARFILE}" -C "${CLASSES}" . RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "jar failed")
endif()
