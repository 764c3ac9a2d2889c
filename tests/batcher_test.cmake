# Under ThreadSanitizer, silence the known false positive on exception_ptr release inside the
# uninstrumented libstdc++ (see batcher_tsan.supp).
if(LLMFAST_TSAN AND TARGET batcher_test)
  set_tests_properties(batcher_test PROPERTIES
    ENVIRONMENT "TSAN_OPTIONS=suppressions=${CMAKE_CURRENT_LIST_DIR}/batcher_tsan.supp")
endif()
