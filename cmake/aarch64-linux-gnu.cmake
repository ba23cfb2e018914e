# CMake toolchain file: cross-compile for aarch64 Linux (Debian's g++-aarch64-linux-gnu), run under qemu.
#
#   cmake -S samples/cpp -B build-a64 -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
#         -DONNXRUNTIME_ROOT=.cache/edge/sysroot-arm64 -DHX_SAMPLE_ALLOW_SHLIB_UNDEFINED=ON
#
# Compiler: aarch64-linux-gnu-g++ from $HYPERONNX_EDGE_CACHE/bin or <repo>/.cache/edge/bin (the unpacked
# toolchain tools/edge/fetch.sh makes), else from PATH (apt-get install g++-aarch64-linux-gnu).
# Sysroot (the target's libc for linking): HYPERONNX_AARCH64_SYSROOT, default the unpacked toolchain tree
# (Debian's cross libc lives in <tree>/usr/aarch64-linux-gnu), or "/" for an installed cross toolchain.
# Emulator (CMAKE_CROSSCOMPILING_EMULATOR, used by ctest and try_run): qemu-aarch64-static -L <runtime
# sysroot> with LD_LIBRARY_PATH inside it; the runtime sysroot is HYPERONNX_AARCH64_RUNTIME, default
# <edge>/sysroot-arm64 (Debian 13 arm64 libonnxruntime 1.21 + its libc 2.41 and libstdc++ 14).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

get_filename_component(_hx_repo "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
if(DEFINED ENV{HYPERONNX_EDGE_CACHE})
  set(_hx_edge "$ENV{HYPERONNX_EDGE_CACHE}")
else()
  set(_hx_edge "${_hx_repo}/.cache/edge")
endif()

if(EXISTS "${_hx_edge}/bin/aarch64-linux-gnu-g++")
  set(_hx_bin "${_hx_edge}/bin/")
  set(_hx_default_sysroot "${_hx_edge}/toolchain")
else()
  set(_hx_bin "")  # from PATH
  set(_hx_default_sysroot "")
endif()
set(CMAKE_C_COMPILER "${_hx_bin}aarch64-linux-gnu-gcc")
set(CMAKE_CXX_COMPILER "${_hx_bin}aarch64-linux-gnu-g++")
set(CMAKE_AR "${_hx_bin}aarch64-linux-gnu-ar" CACHE FILEPATH "")
set(CMAKE_RANLIB "${_hx_bin}aarch64-linux-gnu-ranlib" CACHE FILEPATH "")
set(CMAKE_STRIP "${_hx_bin}aarch64-linux-gnu-strip" CACHE FILEPATH "")
set(CMAKE_OBJDUMP "${_hx_bin}aarch64-linux-gnu-objdump" CACHE FILEPATH "")

if(DEFINED ENV{HYPERONNX_AARCH64_SYSROOT})
  set(HYPERONNX_AARCH64_SYSROOT "$ENV{HYPERONNX_AARCH64_SYSROOT}")
elseif(NOT DEFINED HYPERONNX_AARCH64_SYSROOT)
  set(HYPERONNX_AARCH64_SYSROOT "${_hx_default_sysroot}")
endif()
if(HYPERONNX_AARCH64_SYSROOT AND NOT HYPERONNX_AARCH64_SYSROOT STREQUAL "/")
  # Unpacked (not installed) toolchain: libc.so is a linker script with absolute paths, so links need it.
  set(CMAKE_SYSROOT "${HYPERONNX_AARCH64_SYSROOT}")
endif()

if(DEFINED ENV{HYPERONNX_AARCH64_RUNTIME})
  set(HYPERONNX_AARCH64_RUNTIME "$ENV{HYPERONNX_AARCH64_RUNTIME}")
elseif(NOT DEFINED HYPERONNX_AARCH64_RUNTIME)
  set(HYPERONNX_AARCH64_RUNTIME "${_hx_edge}/sysroot-arm64")
endif()
if(EXISTS "${_hx_edge}/bin/qemu-aarch64-static")
  set(_hx_qemu "${_hx_edge}/bin/qemu-aarch64-static")
else()
  find_program(_hx_qemu NAMES qemu-aarch64-static qemu-aarch64)
endif()
if(_hx_qemu)
  set(CMAKE_CROSSCOMPILING_EMULATOR "${_hx_qemu};-L;${HYPERONNX_AARCH64_RUNTIME};-E;LD_LIBRARY_PATH=${HYPERONNX_AARCH64_RUNTIME}/usr/lib/aarch64-linux-gnu")
endif()

# Libraries and headers of the target only from the sysroot; programs (cmake, python) from the host.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
