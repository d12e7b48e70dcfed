# Helpers shared by every folder: one library per folder, one way to add a test.
#
#   otpd_library(<dir> SOURCES ... [DEPS ...])  builds otpd_<dir>, alias otpd::<dir>,
#       public headers in <dir>/include/otpd/<dir>/. Installed with its headers
#       and exported as otpd::<dir> (find_package(otpd)).
#   otpd_executable(<name> SOURCES ... [DEPS ...] [INSTALL])  lands in build/bin/;
#       INSTALL (or otpd_install_programs) installs it to bin/.
#   otpd_test(<name> SOURCES ... [DEPS ...] [TIMEOUT s] [LABELS ...])
#       a GoogleTest binary registered with gtest_discover_tests.

include_guard(GLOBAL)
include(GNUInstallDirs)
include(GoogleTest)

option(OTPD_WERROR "Treat warnings as errors" OFF)
set(OTPD_SANITIZE "" CACHE STRING "Sanitizers to build with, e.g. address,undefined")
option(OTPD_CLANG_TIDY "Run clang-tidy while compiling" OFF)
# Build time (a first build on a 2-core machine is what scripts/demo.sh
# waits for; docs/BENCHMARKS.md has the figures):
# - unity builds: the libraries and programs compile their sources in
#   batches, so nlohmann/json, fmt and the protocol headers are parsed, and
#   their templates compiled, once per batch instead of once per file: with
#   32 a batch, every library is one or two objects (the demo's targets:
#   183 CPU-s, against 199 with 8 and 806 without batches). Helpers in
#   anonymous namespaces must have names distinct within their library.
#   Tests are not batched (their fixtures share names across files).
# - RelWithDebInfo keeps -O2 but with -g1 (line tables: backtraces, perf and
#   addr2line work) instead of full -g, whose type and variable info for the
#   header-only libraries (CLI11, nlohmann/json) doubled the time of some
#   files. The Debug build (build-asan/) keeps full -g.
# - the development build type, Dev (below), compiles at -Og.
# A build directory configured before these options existed, or with them
# off, keeps its setting: pass -DOTPD_UNITY=ON -DOTPD_LINE_DEBUG=ON once.
option(OTPD_UNITY "Compile libraries and programs as unity builds" ON)
option(OTPD_LINE_DEBUG "RelWithDebInfo with -g1 (line tables) instead of -g" ON)
set(OTPD_UNITY_BATCH 32 CACHE STRING "Source files per unity batch")

# Build types:
# - Dev, scripts/build.sh's default and so build/: what scripts/demo.sh runs
#   and scripts/test.sh tests first. -Og (GCC's level for the edit, compile,
#   debug cycle: optimised, but no pass that costs much compile time) with
#   line tables and assertions. The demo's first build, the one a new user
#   waits for, takes about a quarter less CPU than at -O2 (docs/BENCHMARKS.md).
# - RelWithDebInfo, the default of a bare `cmake -B`: -O2 and line tables.
#   What ships (scripts/package.sh, the Dockerfile, `cmake --install` of such
#   a build) and what the benchmarks measure (scripts/bench.sh, build-release/).
# - Debug: -O0 -g, with the sanitizers in scripts/test.sh's build-asan/.
set(CMAKE_CXX_FLAGS_DEV "-Og -g1" CACHE STRING "C++ flags of the Dev build type")
set(CMAKE_C_FLAGS_DEV "-Og -g1" CACHE STRING "C flags of the Dev build type")
foreach(kind EXE SHARED MODULE STATIC)
  set(CMAKE_${kind}_LINKER_FLAGS_DEV "" CACHE STRING "Linker flags of the Dev build type")
  mark_as_advanced(CMAKE_${kind}_LINKER_FLAGS_DEV)
endforeach()
mark_as_advanced(CMAKE_CXX_FLAGS_DEV CMAKE_C_FLAGS_DEV)
if(DEFINED CACHE{CMAKE_BUILD_TYPE})
  set_property(CACHE CMAKE_BUILD_TYPE PROPERTY STRINGS Dev RelWithDebInfo Release Debug MinSizeRel)
endif()

function(otpd_common_options target)
  target_compile_features(${target} PUBLIC cxx_std_20)
  set_target_properties(${target} PROPERTIES CXX_EXTENSIONS OFF)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wconversion -Wno-sign-conversion
                                           -Wno-missing-field-initializers)
  # After CMAKE_CXX_FLAGS_RELWITHDEBINFO's -g, so it wins (see above).
  if(OTPD_LINE_DEBUG)
    target_compile_options(${target} PRIVATE $<$<CONFIG:RelWithDebInfo>:-g1>)
  endif()
  if(OTPD_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  if(OTPD_SANITIZE)
    target_compile_options(${target} PRIVATE -fsanitize=${OTPD_SANITIZE} -fno-omit-frame-pointer
                                             -fno-sanitize-recover=undefined)
    target_link_options(${target} PRIVATE -fsanitize=${OTPD_SANITIZE})
  endif()
  if(OTPD_CLANG_TIDY)
    find_program(OTPD_TIDY_EXE NAMES clang-tidy clang-tidy-14 REQUIRED)
    set_target_properties(${target} PROPERTIES CXX_CLANG_TIDY "${OTPD_TIDY_EXE}")
  endif()
endfunction()

function(otpd_unity target)
  set_target_properties(${target} PROPERTIES UNITY_BUILD ${OTPD_UNITY}
                                             UNITY_BUILD_BATCH_SIZE ${OTPD_UNITY_BATCH})
endfunction()

function(otpd_library dir)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  set(target otpd_${dir})
  add_library(${target} STATIC ${ARG_SOURCES})
  add_library(otpd::${dir} ALIAS ${target})
  target_include_directories(
    ${target} PUBLIC $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
                     $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>
              PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
  target_link_libraries(${target} PUBLIC ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
  # EXPORT_NAME: installed, otpd_runtime is otpd::runtime as in the build.
  set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE ON EXPORT_NAME ${dir})
  otpd_common_options(${target})
  otpd_unity(${target})
  install(TARGETS ${target} EXPORT otpdTargets ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(DIRECTORY include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
endfunction()

function(otpd_executable name)
  cmake_parse_arguments(ARG "INSTALL" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS})
  otpd_common_options(${name})
  otpd_unity(${name})
  if(ARG_INSTALL)
    otpd_install_programs(${name})
  endif()
endfunction()

# Installs programs defined anywhere in the tree to bin/, skipping the ones a
# partial build (OTPD_SKIP_DIRS) left out. Tests and benchmarks are never listed.
function(otpd_install_programs)
  foreach(name ${ARGN})
    if(TARGET ${name})
      install(TARGETS ${name} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
    endif()
  endforeach()
endfunction()

function(otpd_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;DEPS;LABELS" ${ARGN})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 120)
  endif()
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} otpd::testing GTest::gtest GTest::gtest_main)
  otpd_common_options(${name})
  # Test binaries live beside the product binaries so tests find them with one lookup.
  set(props TIMEOUT ${ARG_TIMEOUT} ENVIRONMENT "OTPD_BIN_DIR=${CMAKE_BINARY_DIR}/bin")
  if(ARG_LABELS)
    list(APPEND props LABELS "${ARG_LABELS}")
  endif()
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES ${props})
endfunction()
