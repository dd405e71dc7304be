# Cross-compiling for 64-bit ARM Linux with Debian's g++-aarch64-linux-gnu; tests run under qemu-aarch64
# (Debian's qemu-user), which finds the target's libraries under /usr/aarch64-linux-gnu.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
# Header-only packages (nlohmann_json, CLI11, doctest) are installed for the build machine and serve any target.
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
find_program(GHOSTFAST_QEMU_AARCH64 qemu-aarch64)
if(GHOSTFAST_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR "${GHOSTFAST_QEMU_AARCH64};-L;/usr/aarch64-linux-gnu")
endif()
