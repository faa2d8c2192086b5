# cmake -P script: compiles the SWIG-generated and the hand-written C# into
# FlowLib.dll. A script because mcs cannot glob, and the generated file list
# is only known after SWIG has run.
#   -DMCS= -DGENERATED=<swig outdir> -DSOURCES=<bindings/csharp> -DOUT=<FlowLib.dll>
file(GLOB sources "${GENERATED}/*.cs" "${SOURCES}/*.cs")
execute_process(
  COMMAND "${MCS}" -target:library -unsafe -optimize+ -nologo -warn:4 -out:${OUT} ${sources}
  RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "mcs failed")
endif()
