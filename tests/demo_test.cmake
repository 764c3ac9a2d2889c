# demo_test runs the built demo: it gets the path of the `llmfast-demo` target (examples/, which is
# added after tests/, hence a generator expression) and makes sure it is built first. Without the
# examples (LLMFAST_BUILD_EXAMPLES=OFF: the asan, tsan, clang and single presets) the variable is
# absent and the test reports itself skipped.
if(TARGET demo_test AND LLMFAST_BUILD_EXAMPLES)
  set_tests_properties(demo_test PROPERTIES ENVIRONMENT "LLMFAST_DEMO=$<TARGET_FILE:llmfast-demo>")
  add_dependencies(demo_test llmfast-demo)
endif()
