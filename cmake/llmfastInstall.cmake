# Install rules: headers, the CMake package (llmfastConfig.cmake + version + targets) and llmfast.pc.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(LLMFAST_CMAKE_INSTALL_DIR "${CMAKE_INSTALL_DATADIR}/cmake/llmfast"
    CACHE STRING "Where llmfastConfig.cmake is installed")

install(DIRECTORY include/llmfast DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
install(TARGETS llmfast EXPORT llmfastTargets)
if(TARGET llmfast_hnsw)
  install(TARGETS llmfast_hnsw EXPORT llmfastHnswTargets)
  install(EXPORT llmfastHnswTargets NAMESPACE llmfast:: DESTINATION "${LLMFAST_CMAKE_INSTALL_DIR}")
endif()
if(TARGET llmfast_redis)
  install(TARGETS llmfast_redis EXPORT llmfastRedisTargets)
  install(EXPORT llmfastRedisTargets NAMESPACE llmfast:: DESTINATION "${LLMFAST_CMAKE_INSTALL_DIR}")
endif()
if(TARGET llmfast_http)
  install(TARGETS llmfast_http EXPORT llmfastHttpTargets)
  install(EXPORT llmfastHttpTargets NAMESPACE llmfast:: DESTINATION "${LLMFAST_CMAKE_INSTALL_DIR}")
endif()
install(EXPORT llmfastTargets NAMESPACE llmfast:: DESTINATION "${LLMFAST_CMAKE_INSTALL_DIR}")

configure_package_config_file(cmake/llmfastConfig.cmake.in
  "${CMAKE_CURRENT_BINARY_DIR}/llmfastConfig.cmake"
  INSTALL_DESTINATION "${LLMFAST_CMAKE_INSTALL_DIR}")
# A header-only library has no ABI: any build of the same major version serves any architecture.
write_basic_package_version_file("${CMAKE_CURRENT_BINARY_DIR}/llmfastConfigVersion.cmake"
  COMPATIBILITY SameMajorVersion ARCH_INDEPENDENT)
install(FILES
  "${CMAKE_CURRENT_BINARY_DIR}/llmfastConfig.cmake"
  "${CMAKE_CURRENT_BINARY_DIR}/llmfastConfigVersion.cmake"
  cmake/llmfastDependencies.cmake
  DESTINATION "${LLMFAST_CMAKE_INSTALL_DIR}")

if(LLMFAST_FMT_HEADER_ONLY)
  set(LLMFAST_PC_CFLAGS "-DFMT_HEADER_ONLY=1")
endif()
configure_file(cmake/llmfast.pc.in "${CMAKE_CURRENT_BINARY_DIR}/llmfast.pc" @ONLY)
install(FILES "${CMAKE_CURRENT_BINARY_DIR}/llmfast.pc" DESTINATION "${CMAKE_INSTALL_DATADIR}/pkgconfig")
