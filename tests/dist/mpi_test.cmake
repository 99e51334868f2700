# sink_mpi_gtest(NAME SOURCES a.cpp... LIBS lib... RANKS 2 4 [TIMEOUT s])
# A GoogleTest binary with its own main (tests/dist/mpi_gtest_main.cpp, which
# initialises MPI). Registered twice over:
#   - each test case alone, one rank with no launcher (MPI singleton): label unit;
#   - the whole binary under mpiexec for each count in RANKS: label mpi.
set(SINK_MPI_GTEST_MAIN ${CMAKE_SOURCE_DIR}/tests/dist/mpi_gtest_main.cpp)

function(sink_mpi_gtest name)
  cmake_parse_arguments(A "" "TIMEOUT" "SOURCES;LIBS;RANKS" ${ARGN})
  if(NOT A_TIMEOUT)
    set(A_TIMEOUT 120)  # a rank that leaves a collective early hangs the others; fail, don't hang
  endif()
  add_executable(${name} ${A_SOURCES} ${SINK_MPI_GTEST_MAIN})
  target_link_libraries(${name} PRIVATE ${A_LIBS} sink_dist GTest::gtest)
  target_compile_options(${name} PRIVATE ${SINK_WARNINGS})
  # gtest_add_tests, as sink_gtest does: gtest_discover_tests flattens the ENVIRONMENT list on CMake 3.25.
  gtest_add_tests(TARGET ${name} SOURCES ${A_SOURCES} TEST_PREFIX "${name}." TEST_LIST _tests)
  set_tests_properties(${_tests} PROPERTIES LABELS "unit" ENVIRONMENT "${SINK_TEST_ENV}" TIMEOUT ${A_TIMEOUT})
  foreach(n ${A_RANKS})
    add_test(NAME ${name}_np${n}
      COMMAND ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe -n ${n} $<TARGET_FILE:${name}>)
    set_tests_properties(${name}_np${n} PROPERTIES LABELS "mpi" ENVIRONMENT "${SINK_TEST_ENV}"
      TIMEOUT ${A_TIMEOUT} PROCESSORS ${n})
  endforeach()
endfunction()
