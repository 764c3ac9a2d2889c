# llmfast-gateway's libFuzzer targets (included by tests/fuzz/CMakeLists.txt in the clang preset):
# the request-body parser and the config-file parser of examples/gateway/parsing.cpp (+ prompt.cpp's
# JSON splicing), which have no Beast/Asio — so no Beast translation unit is built here. Seeds in
# tests/fuzz/corpus/gateway_request/ and tests/fuzz/corpus/gateway_config/; scripts/run_fuzzers.sh runs them.
find_package(simdjson QUIET)
find_package(OpenSSL QUIET)
if(NOT simdjson_FOUND OR NOT OpenSSL_FOUND)
  if(DEFINED ENV{CI})
    message(FATAL_ERROR "gateway fuzzers: simdjson and OpenSSL are required in CI (scripts/install_deps.sh)")
  endif()
  message(WARNING "gateway fuzzers: simdjson or OpenSSL not found; fuzz_gateway_request/fuzz_gateway_config not built")
  return()
endif()
set(_gateway_dir "${PROJECT_SOURCE_DIR}/examples/gateway")
foreach(_name gateway_request gateway_config)
  add_executable(fuzz_${_name} "${_gateway_dir}/fuzz/${_name}.cpp" "${_gateway_dir}/parsing.cpp" "${_gateway_dir}/prompt.cpp")
  target_link_libraries(fuzz_${_name} PRIVATE llmfast::llmfast simdjson::simdjson OpenSSL::Crypto)
  target_compile_options(fuzz_${_name} PRIVATE -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all)
  target_link_options(fuzz_${_name} PRIVATE -fsanitize=fuzzer,address,undefined)
  llmfast_set_warnings(fuzz_${_name})
endforeach()
