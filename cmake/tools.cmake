# The native tools: the model-file reader, ghostfast-bench, and the C++ tests (doctest), run by ctest (through
# CMAKE_CROSSCOMPILING_EMULATOR when cross-compiling: qemu-aarch64 in the aarch64 preset).
if(CMAKE_VERSION VERSION_LESS 3.19)
  message(FATAL_ERROR "the native tools' tests need CMake >= 3.19 (string(JSON)); the presets need 3.25")
endif()
find_package(nlohmann_json 3 CONFIG REQUIRED)
find_package(CLI11 CONFIG REQUIRED)
find_package(doctest CONFIG REQUIRED)

# Reading engine files (the format of python/ghostfast/program.py) and .npy arrays, for programs without Python.
add_library(ghostfast_io STATIC cpp/src/io/model_file.cpp cpp/src/io/npy.cpp)
target_link_libraries(ghostfast_io PUBLIC ghostfast_native PRIVATE nlohmann_json::nlohmann_json)
target_include_directories(ghostfast_io PUBLIC cpp/include PRIVATE cpp/src)

add_executable(ghostfast-bench cpp/tools/ghostfast_bench.cpp)
target_link_libraries(ghostfast-bench PRIVATE ghostfast_io CLI11::CLI11 nlohmann_json::nlohmann_json)

add_executable(ghostfast_cpp_tests
  cpp/tests/main.cpp
  cpp/tests/kernel_test_util.cpp
  cpp/tests/test_kernels.cpp
  cpp/tests/test_model_file.cpp
  cpp/tests/test_npy.cpp
)
target_link_libraries(ghostfast_cpp_tests PRIVATE ghostfast_io doctest::doctest)
target_include_directories(ghostfast_cpp_tests PRIVATE cpp/src cpp/tests)
target_compile_definitions(ghostfast_cpp_tests PRIVATE
  GHOSTFAST_TEST_DATA_DIR="${CMAKE_CURRENT_SOURCE_DIR}/cpp/tests/data")

if(GHOSTFAST_STATIC_TOOLS)
  target_link_options(ghostfast-bench PRIVATE -static)
  target_link_options(ghostfast_cpp_tests PRIVATE -static)
endif()
if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  target_compile_options(ghostfast_io PRIVATE -O2 -Wall -Wextra)
  target_compile_options(ghostfast-bench PRIVATE -O2 -Wall -Wextra)
  target_compile_options(ghostfast_cpp_tests PRIVATE -O2 -Wall -Wextra)
endif()

enable_testing()
include(cmake/cpp_tests.cmake)
