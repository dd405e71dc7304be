# Runs a command and checks its exit code, stderr and stdout (cmake -P; used by cmake/cpp_tests.cmake).
#
# ctest's PASS_REGULAR_EXPRESSION ignores the exit code and WILL_FAIL accepts any failure, a crash included;
# ghostfast-bench promises exit code 2 with exactly one line "ghostfast-bench: error: ..." on stderr.
#
#   -DCOMMAND=prog;arg;...         the command (with the cross-compiling emulator in front where there is one)
#   -DEXPECT_RC=N                  the exit code
#   -DEXPECT_STDERR=REGEX          optional; with EXPECT_RC != 0, stderr must also be exactly one line
#   -DEXPECT_STDOUT=REGEX          optional
#   -DEXPECT_JSON_KEYS=k1;k2;...   optional: stdout is one JSON object that has these keys
cmake_minimum_required(VERSION 3.19)  # string(JSON)

execute_process(COMMAND ${COMMAND} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
string(REPLACE ";" " " shown "${COMMAND}")
set(report "command: ${shown}\nexit code: ${rc}\nstdout:\n${out}\nstderr:\n${err}")

if(NOT rc STREQUAL EXPECT_RC)
  message(FATAL_ERROR "expected exit code ${EXPECT_RC}\n${report}")
endif()
if(DEFINED EXPECT_STDERR)
  if(NOT err MATCHES "${EXPECT_STDERR}")
    message(FATAL_ERROR "stderr does not match '${EXPECT_STDERR}'\n${report}")
  endif()
  if(NOT EXPECT_RC STREQUAL "0" AND NOT err MATCHES "^[^\n]+\n$")
    message(FATAL_ERROR "stderr is not exactly one line\n${report}")
  endif()
endif()
if(DEFINED EXPECT_STDOUT AND NOT out MATCHES "${EXPECT_STDOUT}")
  message(FATAL_ERROR "stdout does not match '${EXPECT_STDOUT}'\n${report}")
endif()
if(DEFINED EXPECT_JSON_KEYS)
  string(JSON type ERROR_VARIABLE json_error TYPE "${out}")
  if(json_error OR NOT type STREQUAL "OBJECT")
    message(FATAL_ERROR "stdout is not one JSON object (${json_error})\n${report}")
  endif()
  foreach(key IN LISTS EXPECT_JSON_KEYS)
    string(JSON value ERROR_VARIABLE json_error GET "${out}" "${key}")
    if(json_error)
      message(FATAL_ERROR "stdout's JSON has no key '${key}'\n${report}")
    endif()
  endforeach()
endif()
