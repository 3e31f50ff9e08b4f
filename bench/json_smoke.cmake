# A smoke test of one connrep-bench scenario: it must exit with status 0
# and print one valid JSON object that has the given keys. Nothing about
# speed is checked: CI machines are shared and noisy.
#
#   cmake -DBENCH=path/to/connrep-bench
#         -DARGS="ingest --connectors 10000 --seconds 1 --json --quiet"
#         -DKEYS="events_per_s baseline_events_per_s ratio"
#         -P json_smoke.cmake
#
# ARGS and KEYS are space-separated (a semicolon would split the test's
# command line); a key "a.b" is member b of object a. Needs CMake >= 3.19
# for string(JSON).
cmake_minimum_required(VERSION 3.19)

if(NOT BENCH OR NOT ARGS)
  message(FATAL_ERROR "usage: cmake -DBENCH=EXE -DARGS=\"...\" [-DKEYS=\"...\"] -P json_smoke.cmake")
endif()
separate_arguments(args UNIX_COMMAND "${ARGS}")
execute_process(
  COMMAND "${BENCH}" ${args}
  OUTPUT_VARIABLE out
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "connrep-bench ${ARGS}: exit status ${rc}\n${out}")
endif()

string(JSON type ERROR_VARIABLE err TYPE "${out}")
if(err OR NOT type STREQUAL "OBJECT")
  message(FATAL_ERROR "connrep-bench ${ARGS}: stdout is not one JSON object (${err})\n${out}")
endif()

separate_arguments(keys UNIX_COMMAND "${KEYS}")
foreach(key IN LISTS keys)
  string(REPLACE "." ";" path "${key}")
  string(JSON value ERROR_VARIABLE err GET "${out}" ${path})
  if(err)
    message(FATAL_ERROR "connrep-bench ${ARGS}: no key '${key}' in the JSON: ${err}")
  endif()
endforeach()
message(STATUS "connrep-bench ${ARGS}: exit 0, valid JSON")
