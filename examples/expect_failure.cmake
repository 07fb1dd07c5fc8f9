# Runs PROGRAM with ARGS (separated by '|') and passes only if it exits with EXIT_CODE and prints
# (stdout or stderr) text matching EXPECTED: a CLI error must both say what is wrong and
# fail. Used by examples/CMakeLists.txt:
#   cmake -DPROGRAM=… -DARGS=… -DEXIT_CODE=2 -DEXPECTED=regex -P expect_failure.cmake
string(REPLACE "|" ";" ARGS "${ARGS}")
execute_process(COMMAND ${PROGRAM} ${ARGS} RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT code STREQUAL EXIT_CODE)
  message(FATAL_ERROR "expected exit code ${EXIT_CODE}, got ${code}\nstdout: ${out}\nstderr: ${err}")
endif()
if(NOT "${out}${err}" MATCHES "${EXPECTED}")
  message(FATAL_ERROR "output does not match '${EXPECTED}'\nstdout: ${out}\nstderr: ${err}")
endif()
