# The simulation in tests/verified_step_test.cpp streams the labelled dev pairs (pairs-dev.tsv, kept
# beside the repository in ../shared/data, not in it: the data is not redistributed) through the
# verifier step. It is a hidden Catch2 test (tag [.data]) run as its own CTest entry,
# verified_step_data_test: skipped when the file is absent, a failure when absent under CI=true.
# Override the path with the environment variable LLMFAST_PAIRS_DEV. Not under ThreadSanitizer: the
# simulation is single-threaded and takes ~40 s there (the threaded cases are in verified_step_test).
if(TARGET verified_step_test)
  target_compile_definitions(verified_step_test PRIVATE
    LLMFAST_PAIRS_DEV_DEFAULT="${PROJECT_SOURCE_DIR}/../shared/data/pairs-dev.tsv")
  if(NOT LLMFAST_TSAN)
    add_test(NAME verified_step_data_test COMMAND verified_step_test "[data]")
    set_tests_properties(verified_step_data_test PROPERTIES
      LABELS "cache" SKIP_RETURN_CODE ${LLMFAST_TEST_SKIP_CODE} TIMEOUT 600)
  endif()
endif()
