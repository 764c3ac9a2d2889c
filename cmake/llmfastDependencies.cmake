# Finds llmfast's dependencies. Used by the build and installed for llmfastConfig.cmake.
#   fmt      -> fmt::fmt / fmt::fmt-header-only (fmt's own CMake package)
#   xxHash   -> xxHash::xxhash. vcpkg and Conan provide that target from a CMake package; Debian ships
#               only xxhash.h and libxxhash.pc, so fall back to the header (llmfast includes it with
#               XXH_INLINE_ALL and never links the library).
include(CMakeFindDependencyMacro)
if(NOT TARGET fmt::fmt AND NOT TARGET fmt::fmt-header-only)
  find_dependency(fmt CONFIG)
endif()

if(NOT TARGET xxHash::xxhash)
  find_package(xxHash CONFIG QUIET)
endif()
if(NOT TARGET xxHash::xxhash)
  find_package(PkgConfig QUIET)
  if(PkgConfig_FOUND)
    pkg_check_modules(PC_LIBXXHASH QUIET libxxhash)
  endif()
  find_path(LLMFAST_XXHASH_INCLUDE_DIR xxhash.h HINTS ${PC_LIBXXHASH_INCLUDE_DIRS})
  if(NOT LLMFAST_XXHASH_INCLUDE_DIR)
    message(FATAL_ERROR "llmfast: xxhash.h not found (Debian: apt-get install libxxhash-dev; "
                        "or set LLMFAST_XXHASH_INCLUDE_DIR)")
  endif()
  add_library(xxHash::xxhash INTERFACE IMPORTED)
  set_target_properties(xxHash::xxhash PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${LLMFAST_XXHASH_INCLUDE_DIR}")
endif()
