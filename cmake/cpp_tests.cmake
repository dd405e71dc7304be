# ctest entries: the doctest suites, and ghostfast-bench's command line on good and bad inputs.
# Each doctest test suite is one ctest test, so a failure names its family.
foreach(suite kernels model_file npy)
  add_test(NAME cpp.${suite} COMMAND ghostfast_cpp_tests --test-suite=${suite})
endforeach()

# ghostfast-bench through cmake/check_exit_code.cmake, which checks the exit code as well as the output. The
# wrapper runs the binary itself, so the emulator (qemu-aarch64 when cross-compiling) goes in front by hand.
set(_data "${CMAKE_CURRENT_SOURCE_DIR}/cpp/tests/data")
set(_bench "${CMAKE_CROSSCOMPILING_EMULATOR};$<TARGET_FILE:ghostfast-bench>")
if(NOT CMAKE_CROSSCOMPILING_EMULATOR)
  set(_bench "$<TARGET_FILE:ghostfast-bench>")
endif()
set(_check "${CMAKE_CURRENT_SOURCE_DIR}/cmake/check_exit_code.cmake")

# name, expected stderr (a regex), arguments (a list). Each must exit 2 with one line on stderr.
function(ghostfast_bench_error name stderr)
  add_test(NAME bench.error.${name} COMMAND ${CMAKE_COMMAND} "-DCOMMAND=${_bench};${ARGN}" -DEXPECT_RC=2
           "-DEXPECT_STDERR=^ghostfast-bench: error: .*${stderr}" -P ${_check})
endfunction()

# A run with --json: one object with every key the host driver reads.
add_test(NAME bench.json COMMAND ${CMAKE_COMMAND}
         "-DCOMMAND=${_bench};${_data}/ghost_blocks.gfe;--json;--iters;3;--warmup;1;--threads;2" -DEXPECT_RC=0
         "-DEXPECT_JSON_KEYS=model;isa;threads;iters;warmup;batch;min_ms;median_ms;mean_ms;p90_ms;max_ms;input_shape;classes;cpu;output"
         "-DEXPECT_STDOUT=\"model\":\"ghost_blocks\".*\"threads\":2" -P ${_check})
# The summary line, and help.
add_test(NAME bench.summary COMMAND ${CMAKE_COMMAND} "-DCOMMAND=${_bench};${_data}/tiny.gfe;--iters;5" -DEXPECT_RC=0
         "-DEXPECT_STDOUT=^tiny: isa [a-z0-9]+, 1 thread, batch 1: min [0-9.]+ / median [0-9.]+ / mean [0-9.]+ / p90 [0-9.]+ / max [0-9.]+ ms over 5 iterations\n$"
         -P ${_check})
add_test(NAME bench.help COMMAND ${CMAKE_COMMAND} "-DCOMMAND=${_bench};--help" -DEXPECT_RC=0
         "-DEXPECT_STDOUT=--threads INT.*=1.*--iters INT.*=100.*--warmup INT.*=10" -P ${_check})

# --output writes the logits of --input; the doctest case "ghostfast-bench --output matches torch" compares them
# with torch's (max |diff| <= 1e-4 max |torch|) without Python.
foreach(model tiny ghost_blocks mobile_blocks shuffle_blocks)
  set(_out "${CMAKE_CURRENT_BINARY_DIR}/bench_output_${model}.npy")
  add_test(NAME bench.output.${model} COMMAND ${CMAKE_COMMAND}
           "-DCOMMAND=${_bench};${_data}/${model}.gfe;--input;${_data}/${model}_input.npy;--output;${_out};--iters;1;--warmup;0"
           -DEXPECT_RC=0 -P ${_check})
  set_tests_properties(bench.output.${model} PROPERTIES FIXTURES_SETUP bench_output_${model})
  add_test(NAME bench.output_matches_torch.${model}
           COMMAND ghostfast_cpp_tests --no-skip "--test-case=ghostfast-bench --output matches torch")
  set_tests_properties(bench.output_matches_torch.${model} PROPERTIES
    FIXTURES_REQUIRED bench_output_${model}
    ENVIRONMENT "GHOSTFAST_BENCH_OUTPUT=${_out};GHOSTFAST_BENCH_REFERENCE=${_data}/${model}_torch.npy"
    # A run that selects no test case passes in doctest: insist on the one assertion-bearing case.
    FAIL_REGULAR_EXPRESSION "test cases: *0 \\|")
endforeach()

# Bad files and arguments: one line, exit code 2, never a crash.
ghostfast_bench_error(missing_file "cannot read model file .*No such file" ${_data}/no_such_model.gfe)
ghostfast_bench_error(not_a_model "not a ghostfast model file \\(bad magic\\)" ${_data}/tiny_input.npy)
ghostfast_bench_error(truncated "checksum mismatch" ${_data}/bad_truncated.gfe)
ghostfast_bench_error(flipped_byte "checksum mismatch" ${_data}/bad_checksum.gfe)
ghostfast_bench_error(invalid_program "invalid program: " ${_data}/bad_program.gfe)
ghostfast_bench_error(npy_float64 "holds float64 \\('<f8'\\)" ${_data}/tiny.gfe --input ${_data}/tiny_input_f64.npy)
ghostfast_bench_error(npy_fortran "Fortran-order" ${_data}/tiny.gfe --input ${_data}/tiny_input_fortran.npy)
ghostfast_bench_error(input_shape "has shape \\(1, 3, 9, 8\\); .* takes \\(N, 3, 9, 9\\)"
                      ${_data}/tiny.gfe --input ${_data}/tiny_input_shape.npy)
ghostfast_bench_error(input_batch "1 <= N <= 2" ${_data}/tiny.gfe --input ${_data}/tiny_input_batch3.npy)
ghostfast_bench_error(input_missing "cannot read .*no_such_input.npy" ${_data}/tiny.gfe --input ${_data}/no_such_input.npy)
ghostfast_bench_error(output_unwritable "cannot write " ${_data}/tiny.gfe --iters 1 --output /nonexistent-dir/y.npy)
ghostfast_bench_error(isa_unknown "unknown --isa 'sse9'" ${_data}/tiny.gfe --isa sse9)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64|ARM64)$")
  ghostfast_bench_error(isa_unavailable "--isa avx2 is not available" ${_data}/tiny.gfe --isa avx2)
else()
  ghostfast_bench_error(isa_unavailable "--isa neon is not available" ${_data}/tiny.gfe --isa neon)
endif()
ghostfast_bench_error(threads_zero "--threads" ${_data}/tiny.gfe --threads 0)
ghostfast_bench_error(threads_too_many "--threads" ${_data}/tiny.gfe --threads 257)
ghostfast_bench_error(threads_not_a_number "--threads" ${_data}/tiny.gfe --threads two)
ghostfast_bench_error(iters_zero "--iters" ${_data}/tiny.gfe --iters 0)
ghostfast_bench_error(warmup_negative "--warmup" ${_data}/tiny.gfe --warmup -1)
ghostfast_bench_error(no_model "MODEL is required")
ghostfast_bench_error(unknown_option "--bogus" ${_data}/tiny.gfe --bogus)
