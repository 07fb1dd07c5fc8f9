# cmake -DSOURCE=.. -DBINARY=.. -DCOMPILER=.. "-DARGS=-Da=1|-Db=2" -P build_and_run.cmake
# (ARGS separated by | because ctest would split a list at its semicolons)
# Configures, builds and runs the consumer project from scratch; fails on any error.
string(REPLACE "|" ";" ARGS "${ARGS}")
file(REMOVE_RECURSE ${BINARY})
foreach(step IN ITEMS configure build run)
  if(step STREQUAL "configure")
    set(command ${CMAKE_COMMAND} -S ${SOURCE} -B ${BINARY} -DCMAKE_CXX_COMPILER=${COMPILER}
                -DCMAKE_BUILD_TYPE=Release ${ARGS})
  elseif(step STREQUAL "build")
    set(command ${CMAKE_COMMAND} --build ${BINARY})
  else()
    set(command ${BINARY}/consumer)
  endif()
  execute_process(COMMAND ${command} RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "consumer ${step} failed (${result}): ${command}")
  endif()
endforeach()
