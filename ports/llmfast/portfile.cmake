# vcpkg overlay port for llmfast: `vcpkg install llmfast --overlay-ports=<repo>/ports`.
# Header-only: the install is the same tree `cmake --install` produces (headers, CMake package, .pc).
vcpkg_from_github(
  OUT_SOURCE_PATH SOURCE_PATH
  REPO llmfast/llmfast
  REF "v${VERSION}"
  SHA512 0  # set when a release is tagged
  HEAD_REF main
)

vcpkg_cmake_configure(
  SOURCE_PATH "${SOURCE_PATH}"
  OPTIONS
    -DLLMFAST_BUILD_TESTS=OFF
    -DLLMFAST_BUILD_EXAMPLES=OFF
    -DLLMFAST_BUILD_BENCHMARKS=OFF
    -DLLMFAST_INSTALL=ON
    -DLLMFAST_CMAKE_INSTALL_DIR=share/llmfast
)
vcpkg_cmake_install()
vcpkg_cmake_config_fixup(PACKAGE_NAME llmfast CONFIG_PATH share/llmfast)
vcpkg_fixup_pkgconfig()

# Header-only: no libraries, nothing under debug/.
file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/debug" "${CURRENT_PACKAGES_DIR}/lib")
file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
